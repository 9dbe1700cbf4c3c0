"""Comparing stored evaluations, in three steps a module each.

``load``: ORM rows and their stored bytes to numpy arrays, and the checks that the
picked items compare at all. ``analysis``: pure numpy and scipy (pairing tasks,
means with intervals, paired t and Wilcoxon tests, box statistics, histograms),
tested without a database. ``display``: what the compare page and its chart show.
The compare page's selector (``apps.reviews.selectors.comparison``) and the
leaderboard (``apps.reviews.selectors.leaderboard``) run them.
"""
