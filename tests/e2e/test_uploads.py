"""Task-set uploads, end to end in Chromium on the real stack (see conftest.py).

A person picks the ``table`` family and uploads the issue's hostile zip (6,000
PNGs of 256x256 in about 1 MB): the page says, on the file field, that the set is
over the pixel limit, and nothing is created. The same person then uploads a
small valid zip of class folders and lands on the new task set.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.ui import log_in
from tests.workers.metalearn.test_uploads import many_big_pngs, png, write_zip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _submit_table(page, base_url: str, team_slug: str, *, name: str, upload) -> None:
    page.goto(f"{base_url}/t/{team_slug}/tasksets/new/")
    with page.expect_response(re.compile(r"/tasksets/new/fields/")):
        page.select_option("#id_family", "table")
    page.fill("#id_name", name)
    page.set_input_files("#id_data_file", str(upload))
    page.click("#taskset-form button[type=submit]")


def test_a_hostile_zip_is_refused_on_the_page_and_a_good_one_is_kept(
    live_stack, e2e_page, e2e_user, tmp_path
):
    from apps.tasksets.models import TaskSet

    user, team = e2e_user
    page = e2e_page
    log_in(page, live_stack.base_url, user.username)
    hostile = many_big_pngs(tmp_path / "many.zip")
    _submit_table(page, live_stack.base_url, team.slug, name="Hostile", upload=hostile)
    error = page.locator("#id_data_file_error")
    error.wait_for()
    assert error.inner_text() == (
        "The file holds 6,000 images of 256x256 pixels, 393,216,000 pixels in all; the limit is 33,554,432"
    )
    page.shots.take(page, "hostile-zip-refused")
    assert not TaskSet.objects.exists()

    files = {f"c{k}/{i}.png": png(value=40 * k) for k in range(3) for i in range(2)}
    good = write_zip(tmp_path / "good.zip", files)
    _submit_table(page, live_stack.base_url, team.slug, name="Glyphs", upload=good)
    page.wait_for_url(re.compile(r"/tasksets/\d+/$"))
    page.shots.take(page, "good-zip-kept")
    assert TaskSet.objects.get().name == "Glyphs"
