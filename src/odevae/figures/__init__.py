"""Stage 7, figures: seaborn plots of data, trajectories and training curves, the
papers' figures and the held-out prediction figures."""
