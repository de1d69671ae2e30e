"""EDF/EDF+ files via ``edfio``: ECG channels picked by label, physical units converted to mV.

The header's record count and layout are checked against the file size before
edfio decodes anything: a truncated file or one claiming more data records than it
holds is refused, never read as a shorter record.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from ..errors import ECGError
from ._common import build_ecg, check_rate, scale_channels_to_mv, select_channels
from ._hospital import regular_file_size
from .leads import normalize_lead_name
from .record import ECG

_FIXED_HEADER = 256  # bytes before the per-signal header fields
_SIGNAL_HEADER = 256  # bytes of header per signal
_SAMPLES_FIELD = 216  # bytes per signal of the fields before "samples per data record" (label ... prefiltering)


def edf_channel_name(label: str) -> str:
    """The lead name an EDF signal label gives: a standard lead, else the sensor of an ECG label, else the label.

    EDF+ labels read ``"<type> <sensor>"``; ``"ECG II"``, ``"EKG V1"`` and plain
    ``"II"`` name leads, and so does ``"EEG II"`` (some exporters type every
    channel as EEG; no EEG electrode is called I-III, aVR/aVL/aVF or V1-V6).
    ``"ECG vx"`` is lead ``vx``; other labels (``"EEG Fpz-Cz"``, ``"Resp"``) stay as they are.
    """
    sensor = re.sub(r"^\s*(ECG|EKG|EEG)\s+", "", label, flags=re.IGNORECASE).strip()
    standard = normalize_lead_name(sensor)
    if standard is not None:
        return standard
    return sensor if re.match(r"^\s*(ECG|EKG)\s+\S", label, flags=re.IGNORECASE) else label.strip()


def _field(raw: bytes, what: str, src: str, kind: type = int) -> float:
    """One ASCII number of the EDF header; anything else is an ECGError naming the field."""
    try:
        return kind(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ECGError(src, f"unreadable EDF header: {what} field {raw!r} is not {'an integer' if kind is int else 'a number'}") from exc


def check_edf_layout(path: str | os.PathLike) -> None:
    """The file must hold exactly the data records its header promises (a regular file, checked before decoding).

    A file with only EDF+ annotation channels, or with a non-positive data record
    duration, is refused too: it holds no ECG.
    """
    src = str(path)
    size = regular_file_size(path)
    try:
        with open(path, "rb") as fh:
            fixed = fh.read(_FIXED_HEADER)
            if len(fixed) < _FIXED_HEADER:
                raise ECGError(src, f"truncated EDF header: {len(fixed)} of {_FIXED_HEADER} bytes")
            header_bytes = _field(fixed[184:192], "header size", src)
            n_signals = _field(fixed[252:256], "number of signals", src)
            if n_signals < 1 or header_bytes != _FIXED_HEADER + _SIGNAL_HEADER * n_signals:
                raise ECGError(src, f"unreadable EDF header: {n_signals} signal(s) but a header of {header_bytes} bytes")
            if header_bytes > size:
                raise ECGError(src, f"truncated EDF header: {header_bytes} bytes promised, the file holds {size}")
            signal_header = fh.read(header_bytes - _FIXED_HEADER)
    except OSError as exc:
        raise ECGError(src, f"cannot read ({exc.strerror or exc})") from exc
    labels = [signal_header[16 * i:16 * i + 16].decode("ascii", errors="replace").strip() for i in range(n_signals)]
    if all(label == "EDF Annotations" for label in labels):
        raise ECGError(src, "no ECG lead: the file holds no signal channels (EDF+ annotations only)")
    n_records = _field(fixed[236:244], "number of data records", src)
    duration = _field(fixed[244:252], "data record duration", src, float)
    if not (math.isfinite(duration) and duration > 0):
        raise ECGError(src, f"EDF header states a data record duration of {duration:g} s")
    fields = signal_header[_SAMPLES_FIELD * n_signals:]
    per_record = [_field(fields[8 * i:8 * i + 8], f"samples per data record of signal {i + 1}", src)
                  for i in range(n_signals)]
    if any(n < 1 for n in per_record):
        raise ECGError(src, f"unreadable EDF header: samples per data record {per_record}")
    record_bytes = 2 * sum(per_record)
    data = size - header_bytes
    if n_records == -1 and data % record_bytes == 0 and data > 0:
        return  # an unclosed recording states -1; whole data records follow
    if n_records < 1:
        raise ECGError(src, f"EDF header states {n_records} data records")
    expected = n_records * record_bytes
    if data < expected:
        raise ECGError(src, f"truncated EDF file: header promises {n_records} data records of {record_bytes} bytes "
                            f"({expected} bytes) but the file holds {data} bytes of data")
    if data > expected:
        raise ECGError(src, f"header/data mismatch: header promises {n_records} data records of {record_bytes} bytes "
                            f"({expected} bytes) but the file holds {data} bytes of data")


def read_edf(path: str | os.PathLike, sampling_rate: float | None = None, leads: list[str] | None = None) -> ECG:
    """Read the ECG leads of an EDF/EDF+ file into an ECG in mV.

    Annotation channels are never signals here; channels whose label or unit says
    they are not ECG (respiration, SpO2, EEG...), or that are sampled at another rate
    than most ECG channels, are set aside and listed in ``metadata["ignored_channels"]``.
    With ``leads`` every signal channel is named by ``leads`` in order.
    """
    import edfio

    src = str(path)
    check_edf_layout(path)
    try:
        with np.errstate(all="ignore"):  # absurd scalings overflow to inf, which validation refuses
            edf = edfio.read_edf(path, lazy_load_data=False)
            signals = list(edf.signals)
            data = [np.asarray(s.data, dtype=np.float64) for s in signals]
            rates = [float(s.sampling_frequency) for s in signals]
    except Exception as exc:  # edfio raises ValueError/IndexError/UnicodeDecodeError/ZeroDivisionError for broken files
        raise ECGError(src, f"unreadable EDF file ({type(exc).__name__}: {exc})") from exc
    labels = [s.label for s in signals]
    if leads is not None and len(leads) != len(signals):
        raise ECGError(src, f"leads= names {len(leads)} channels but the file has {len(signals)}: {labels}")
    names = list(leads) if leads is not None else [edf_channel_name(label) for label in labels]
    units = [s.physical_dimension.strip() for s in signals]
    keep, ignored = select_channels(names, units, rates, src)
    check_rate(rates[keep[0]], sampling_rate, src)
    lengths = {len(data[i]) for i in keep}
    if len(lengths) > 1:
        raise ECGError(src, f"ECG channels have differing lengths {sorted(lengths)}")
    signal = scale_channels_to_mv(np.stack([data[i] for i in keep]), [units[i] for i in keep], src)
    metadata = {
        "format": "edf",
        "original_leads": [labels[i] for i in keep],
        "original_units": [units[i] for i in keep],
        "ignored_channels": ignored,
        "patient": edf.local_patient_identification.strip(),
        "recording": edf.local_recording_identification.strip(),
    }
    return build_ecg(signal, rates[keep[0]], [names[i] for i in keep], src, metadata)
