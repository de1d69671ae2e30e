"""The typed ECG record every reader returns and every later layer consumes: any set of leads."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ECGError
from .leads import STANDARD_LEADS, derived_leads, normalize_lead_name, standardize_leads


@dataclass(frozen=True)
class ECG:
    """One ECG: ``signal`` is float32, shaped (leads, samples), in ``units``.

    ``leads`` are whatever the source recorded: the standard leads it has (in
    ``STANDARD_LEADS`` order after reading), then other leads under their own names
    (Frank X/Y/Z, V7, generic channels). Models take ``standard12()``.

    ``labels`` are PTB-XL SCP statement codes when the source carries
    diagnoses (PTB-XL metadata, challenge ``#Dx`` lines mapped from SNOMED-CT);
    ``None`` means the source has no labels at all, ``()`` means it has none
    that map. ``metadata`` keeps whatever the source said (age, sex, raw codes).
    """

    signal: np.ndarray
    sampling_rate: float
    leads: tuple[str, ...]
    units: str = "mV"
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None

    def __post_init__(self):
        sig = np.asarray(self.signal)
        if sig.ndim != 2:
            raise ECGError(self.source, f"signal must be 2-D (leads, samples), got shape {sig.shape}")
        if sig.shape[0] != len(self.leads):
            raise ECGError(self.source, f"{sig.shape[0]} signal rows but {len(self.leads)} lead names")
        if not (self.sampling_rate and self.sampling_rate > 0):
            raise ECGError(self.source, f"sampling rate must be positive, got {self.sampling_rate!r}")
        if sig.dtype != np.float32:
            with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf; readers refuse them
                object.__setattr__(self, "signal", sig.astype(np.float32))

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / float(self.sampling_rate)

    def lead(self, name: str) -> np.ndarray:
        return self.signal[self.leads.index(name)]

    def select(self, names: list[str] | tuple[str, ...]) -> "ECG":
        """The record with only the named leads, in the order given.

        A name matches a lead exactly or by its standard spelling (``"ii"``,
        ``"MLII"`` -> ``II``); an unknown name is an ECGError listing the leads there are.
        """
        index = []
        for name in names:
            wanted = str(name).strip()
            standard = normalize_lead_name(wanted)
            found = wanted if wanted in self.leads else standard if standard in self.leads else None
            if found is None:
                raise ECGError(self.source or None, f"no lead {wanted!r} in this record; its leads are {list(self.leads)}")
            index.append(self.leads.index(found))
        if len(set(index)) != len(index):
            raise ECGError(self.source or None, f"lead(s) named more than once in {list(names)}")
        return replace(self, signal=self.signal[index], leads=tuple(self.leads[i] for i in index))

    def standard12(self) -> "ECG":
        """The record as the 12 standard leads in ``STANDARD_LEADS`` order, for models.

        Other leads are left out; missing limb leads are derived from any two
        recorded ones (added to ``metadata["derived_leads"]``). Any other missing
        lead is an ECGError naming it.
        """
        if self.leads == STANDARD_LEADS:
            return self
        signal, leads = standardize_leads(self.signal, self.leads, source=self.source)
        derived = {*self.metadata.get("derived_leads", []), *derived_leads(self.leads)}
        metadata = {**self.metadata, "derived_leads": [n for n in STANDARD_LEADS if n in derived]}
        return replace(self, signal=signal, leads=leads, metadata=metadata)

    def with_signal(self, signal: np.ndarray, sampling_rate: float | None = None, **changes) -> "ECG":
        """A copy with a new signal (and rate); everything else is kept."""
        rate = self.sampling_rate if sampling_rate is None else sampling_rate
        return replace(self, signal=np.asarray(signal, dtype=np.float32), sampling_rate=rate, **changes)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (what ``ecglens read`` prints)."""
        return {
            "source": self.source,
            "leads": list(self.leads),
            "sampling_rate": float(self.sampling_rate),
            "n_samples": self.n_samples,
            "duration_s": round(self.duration, 3),
            "units": self.units,
            "labels": None if self.labels is None else list(self.labels),
            "metadata": self.metadata,
        }
