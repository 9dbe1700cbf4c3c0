"""The run list as a team's search page: the columns a user may show and sort by
(``columns``), keyset pages over any sort (``keyset``), and the selector that puts
the search, the filters, the sort and the page together (``selectors``).

Torch-free: the web process imports this package.
"""
