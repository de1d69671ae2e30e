"""ECG paper figures (no model knowledge): records, median beats and beat overlays at true scale."""
from .paper import GAIN_MM_MV, SPEED_MM_S, paper_size_mm, plot_beats, plot_ecg, plot_overlay, save_figure

__all__ = ["GAIN_MM_MV", "SPEED_MM_S", "paper_size_mm", "plot_beats", "plot_ecg", "plot_overlay", "save_figure"]
