"""Hospital export formats: GE MUSE, Philips Sierra, DICOM, HL7 aECG and ISHNE.

The sample files (``../shared/data/formats``, pydicom's DICOM ECG) are checked against
decodes written here with base64/numpy, not through the readers; a PTB-XL record is
written as MUSE, aECG, DICOM and ISHNE by the small writers below and read back
within each format's quantisation; malformed files give ``ECGError`` naming the file.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from ecglens.errors import ECGError
from ecglens.io import (STANDARD_LEADS, derive_limb_leads, find_records, read_aecg, read_dicom, read_ecg, read_ishne,
                        read_muse, read_philips)
from ecglens.samples import load_sample

FORMATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats"
MUSE_SAMPLE = FORMATS / "ge-muse-xml" / "synthetic_muse.xml"
PHILIPS_DIR = FORMATS / "philips-xml"
MUSE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
XML_LIMIT = 64 * 2**20

# What each Philips sample's interpretation states (read off the files by eye): PR, QRS, QT, QTc (ms), axes (deg), HR.
PHILIPS_DEVICE = {
    "129DYPRG.XML": dict(heart_rate=41, pr_interval_ms=151, qrs_duration_ms=135, qt_ms=476, qtc_ms=393,
                         p_axis_deg=66, axis_deg=-21, t_axis_deg=59),
    "2020-5-18_15-48-11.xml": dict(heart_rate=64, pr_interval_ms=164, qrs_duration_ms=102, qt_ms=399, qtc_ms=412,
                                   p_axis_deg=27, axis_deg=22, t_axis_deg=80, rr_ms=938, atrial_rate=64),
    "3191723_ZZDEMOPTONLY_1-04_orig.xml": dict(heart_rate=84, pr_interval_ms=144, qrs_duration_ms=84, qt_ms=352,
                                               qtc_ms=417, p_axis_deg=81, axis_deg=78, t_axis_deg=67, rr_ms=714,
                                               atrial_rate=77),
    "ad4d3d80-d165_1-04_orig.xml": dict(heart_rate=41, pr_interval_ms=144, qrs_duration_ms=102, qt_ms=564, qtc_ms=466,
                                        p_axis_deg=19, axis_deg=85, t_axis_deg=53, rr_ms=1463, atrial_rate=41),
    "repbeats_example.xml": dict(heart_rate=41, pr_interval_ms=151, qrs_duration_ms=135, qt_ms=476, qtc_ms=393,
                                 p_axis_deg=66, axis_deg=-21, t_axis_deg=59),
}
# Raw units of every lead at sample 1000 of one Philips file (5 uV each): pins the XLI decode.
PHILIPS_GOLDEN = ("3191723_ZZDEMOPTONLY_1-04_orig.xml", 1000, [1, -48, -49, 24, 25, -49, 5, -4, 28, -27, 9, 13])
# pydicom's waveform_ecg.dcm: the device's annotations and the raw rhythm samples of every channel at 4 positions.
DICOM_DEVICE = dict(rr_ms=982, pr_interval_ms=161, qrs_duration_ms=75, qt_ms=368, qtc_ms=370, p_axis_deg=74,
                    axis_deg=52, t_axis_deg=57)
DICOM_GOLDEN_AT = [0, 1000, 5000, 9999]
DICOM_GOLDEN = [[80, 57, 43, 20], [90, 33, 55, 110], [10, -24, 12, 90], [-85, -45, -49, -65], [35, 40, 15, -35],
                [50, 4, 33, 100], [40, 80, 55, 20], [15, 25, 25, -10], [-10, 50, 10, -90], [-20, 10, -40, -110],
                [-55, -30, -70, -120], [-40, -25, -25, -90]]


@pytest.fixture(scope="module")
def formats_dir() -> Path:
    if not FORMATS.is_dir():
        pytest.skip(f"hospital format samples not found at {FORMATS} (../shared/data/formats beside the project)")
    return FORMATS


@pytest.fixture(scope="module")
def ref():
    """A PTB-XL record at 500 Hz, the source of every round trip."""
    return load_sample(172, 500)


@pytest.fixture(scope="module")
def philips(formats_dir):
    """Every Philips sample read once (XLI decoding is slow): file name -> ECG."""
    return {p.name: read_ecg(p) for p in sorted(PHILIPS_DIR.glob("*")) if p.suffix.lower() == ".xml"}


@pytest.fixture(scope="module")
def dicom_path():
    pydicom_data = pytest.importorskip("pydicom.data")
    return Path(pydicom_data.get_testdata_file("waveform_ecg.dcm"))


def _raises_naming(path, call):
    """``call()`` raises ECGError whose message names ``path``; returns the message."""
    with pytest.raises(ECGError) as info:
        call()
    assert str(path) in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- GE MUSE


def _muse_leads(text: str, kind: str = "Rhythm") -> dict[str, np.ndarray]:
    """Independent decode of one MUSE waveform: lead -> mV (base64 little-endian int16 x units per bit)."""
    block = re.search(rf"<WaveformType>{kind}</WaveformType>(.*?)</Waveform>", text, re.S).group(1)
    out = {}
    for lead in re.findall(r"<LeadData>(.*?)</LeadData>", block, re.S):
        field = {k: v for k, v in re.findall(r"<(\w+)>([^<]*)</\1>", lead)}
        to_mv = {"MICROVOLTS": 1e-3, "MILLIVOLTS": 1.0}[field["LeadAmplitudeUnits"]]
        counts = np.frombuffer(base64.b64decode(field["WaveFormData"]), "<i2")
        out[field["LeadID"]] = counts * float(field["LeadAmplitudeUnitsPerBit"]) * to_mv
    return out


def muse_xml(ecg, leads=MUSE_LEADS, per_bit=4.88, units="MICROVOLTS", median=None) -> str:
    """A MUSE RestingECG export of ``ecg`` (leads stored as MUSE does, 8 by default) with device facts."""
    factor = {"MICROVOLTS": 1e3, "MILLIVOLTS": 1.0}[units] / per_bit

    def waveform(kind, signal):
        blocks = []
        for name in leads:
            counts = np.round(signal[STANDARD_LEADS.index(name)].astype(np.float64) * factor).astype("<i2")
            blocks.append(f"<LeadData><LeadByteCountTotal>{counts.nbytes}</LeadByteCountTotal>"
                          f"<LeadSampleCountTotal>{counts.size}</LeadSampleCountTotal><LeadSampleSize>2</LeadSampleSize>"
                          f"<LeadAmplitudeUnitsPerBit>{per_bit}</LeadAmplitudeUnitsPerBit>"
                          f"<LeadAmplitudeUnits>{units}</LeadAmplitudeUnits><LeadID>{name}</LeadID>"
                          f"<WaveFormData>{base64.encodebytes(counts.tobytes()).decode()}</WaveFormData></LeadData>")
        return (f"<Waveform><WaveformType>{kind}</WaveformType><SampleBase>{int(ecg.sampling_rate)}</SampleBase>"
                f"<SampleExponent>0</SampleExponent>{''.join(blocks)}</Waveform>")

    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n<RestingECG>'
            "<PatientDemographics><PatientAge>63</PatientAge><AgeUnits>YEARS</AgeUnits><Gender>FEMALE</Gender>"
            "</PatientDemographics><RestingECGMeasurements><VentricularRate>72</VentricularRate>"
            "<AtrialRate>72</AtrialRate><PRInterval>160</PRInterval><QRSDuration>94</QRSDuration>"
            "<QTInterval>380</QTInterval><QTCorrected>416</QTCorrected><PAxis>55</PAxis><RAxis>-10</RAxis>"
            "<TAxis>40</TAxis></RestingECGMeasurements><Diagnosis><Modality>RESTING</Modality>"
            "<DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Normal sinus rhythm</StmtText></DiagnosisStatement>"
            "<DiagnosisStatement><StmtText>Borderline</StmtText></DiagnosisStatement>"
            "<DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>ECG</StmtText></DiagnosisStatement></Diagnosis>"
            + ("" if median is None else waveform("Median", median)) + waveform("Rhythm", ecg.signal) + "</RestingECG>")


def test_muse_sample_matches_an_independent_decode(formats_dir):
    text = MUSE_SAMPLE.read_text(encoding="latin-1")
    stored = _muse_leads(text)
    ecg = read_ecg(MUSE_SAMPLE)
    assert ecg.signal.shape == (12, 5000) and ecg.sampling_rate == 500 and ecg.leads == STANDARD_LEADS
    assert list(stored) == list(MUSE_LEADS) == ecg.metadata["original_leads"]
    for name, values in stored.items():
        np.testing.assert_allclose(ecg.lead(name), values, atol=1e-6)
    derived = derive_limb_leads(stored["I"], stored["II"])
    for name in ("III", "aVR", "aVL", "aVF"):
        np.testing.assert_allclose(ecg.lead(name), derived[name], atol=1e-6)
    assert ecg.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    # golden: samples 100 and 1234 in file units (4.88 uV each)
    golden = {"I": (190, 40), "II": (380, 80), "V1": (571, 120), "V6": (1522, 320)}
    for name, counts in golden.items():
        np.testing.assert_allclose(ecg.lead(name)[[100, 1234]], np.array(counts) * 4.88e-3, atol=1e-6)
    assert ecg.metadata["device_measurements"] == {} and ecg.metadata["device_statements"] == []


@pytest.mark.parametrize("units, per_bit", [("MICROVOLTS", 4.88), ("MILLIVOLTS", 0.005)])
def test_muse_round_trip_with_device_facts_and_median(tmp_path, ref, units, per_bit):
    path = tmp_path / "muse.xml"
    median = ref.signal[:, 1000:1600]
    path.write_text(muse_xml(ref, units=units, per_bit=per_bit, median=median), encoding="latin-1")
    ecg = read_ecg(path)
    step = per_bit * (1e-3 if units == "MICROVOLTS" else 1.0)
    stored = [STANDARD_LEADS.index(n) for n in MUSE_LEADS]
    assert np.abs(ecg.signal[stored] - ref.signal[stored]).max() <= step / 2 + 1e-6
    expected = derive_limb_leads(ref.lead("I").astype(np.float64), ref.lead("II").astype(np.float64))
    for name, values in expected.items():
        assert np.abs(ecg.lead(name) - values).max() <= 1.5 * step + 1e-6
    meta = ecg.metadata
    assert meta["device_measurements"] == dict(heart_rate=72, atrial_rate=72, pr_interval_ms=160, qrs_duration_ms=94,
                                               qt_ms=380, qtc_ms=416, p_axis_deg=55, axis_deg=-10, t_axis_deg=40)
    assert meta["device_measurements_raw"]["QRSDuration"] == "94"
    assert meta["device_statements"] == ["Normal sinus rhythm", "Borderline ECG"]
    assert (meta["age"], meta["sex"]) == (63, "Female")
    beats = meta["median_beats"]
    assert beats["leads"] == list(STANDARD_LEADS) and beats["sampling_rate"] == 500 and beats["signal"].shape == (12, 600)
    assert np.abs(beats["signal"][stored] - median[stored]).max() <= step / 2 + 1e-6


# ---------------------------------------------------------------- Philips


def test_philips_samples_read_as_12_leads_with_calibration_removed(philips):
    assert sorted(philips) == sorted(PHILIPS_DEVICE)
    for name, ecg in philips.items():
        assert ecg.signal.shape == (12, 5000) and ecg.sampling_rate == 500 and ecg.leads == STANDARD_LEADS, name
        assert ecg.metadata["calibration_samples_removed"] == 500, name
        s = ecg.signal.astype(np.float64)
        # the file rebuilds III and the augmented leads from residuals: Einthoven/Goldberger hold to 2 units (5 uV)
        limb = derive_limb_leads(s[0], s[1])
        for lead, values in limb.items():
            assert np.abs(s[STANDARD_LEADS.index(lead)] - values).max() <= 0.0101, (name, lead)


def test_philips_scale_from_the_calibration_pulse_and_golden_units(philips, formats_dir):
    sierraecg = pytest.importorskip("sierraecg")
    name, at, units = PHILIPS_GOLDEN
    path = PHILIPS_DIR / name
    resolution = float(re.search(r'resolution="([\d.]+)"', path.read_text(encoding="utf-16")).group(1))
    decoded = np.stack([lead.samples for lead in sierraecg.read_file(str(path)).leads]).astype(np.float64)
    # the last second holds the 1 mV calibration pulse: in file units it is 1000 uV / resolution
    assert np.all(decoded[:, 5350:5450] == 1000.0 / resolution)
    ecg = philips[name]
    np.testing.assert_allclose(ecg.signal, decoded[:, :5000] * resolution * 1e-3, atol=1e-6)
    np.testing.assert_allclose(ecg.signal[:, at], np.array(units) * resolution * 1e-3, atol=1e-6)


def test_philips_device_measurements_statements_and_patient(philips):
    for name, ecg in philips.items():
        assert ecg.metadata["device_measurements"] == PHILIPS_DEVICE[name], name
        assert ecg.metadata["device_statements"], name
    first = philips["3191723_ZZDEMOPTONLY_1-04_orig.xml"].metadata
    assert first["device_statements"][0] == "SINUS RHYTHM (normal P axis, V-rate 60-99)"
    assert first["device_measurements_raw"]["qtcf"] == "394" and first["sex"] == "Male"
    assert philips["129DYPRG.XML"].metadata["age"] == 50


def test_philips_median_beats_match_an_independent_decode(philips):
    path = PHILIPS_DIR / "3191723_ZZDEMOPTONLY_1-04_orig.xml"
    text = path.read_text(encoding="utf-16")
    resolution = float(re.search(r'<repbeats [^>]*resolution="([\d.]+)"', text).group(1))
    leads = re.findall(r'<repbeat leadname="(\w+)">.*?<waveform[^>]*>([^<]*)</waveform>', text, re.S)
    counts = {lead: np.frombuffer(base64.b64decode("".join(data.split())), "<i2") for lead, data in leads}
    beats = philips[path.name].metadata["median_beats"]
    assert beats["sampling_rate"] == 500 and beats["signal"].shape == (12, 600)
    for lead, raw in counts.items():
        assert np.all(raw[600:] == 32767)  # the fixed buffer's fill, left out
        np.testing.assert_allclose(beats["signal"][STANDARD_LEADS.index(lead)], raw[:600] * resolution * 1e-3, atol=1e-6)


# ---------------------------------------------------------------- DICOM


def test_dicom_sample_matches_an_independent_decode(dicom_path):
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(dicom_path)
    ecg = read_ecg(dicom_path)
    assert ecg.signal.shape == (12, 10000) and ecg.sampling_rate == 1000 and ecg.leads == STANDARD_LEADS
    rhythm, median = ds.WaveformSequence[0], ds.WaveformSequence[1]
    assert rhythm.MultiplexGroupLabel == "RHYTHM" and ecg.metadata["waveform_group"] == 0

    def decode(group):
        raw = np.frombuffer(group.WaveformData, "<i2").reshape(group.NumberOfWaveformSamples, -1).T.astype(np.float64)
        scale = [float(c.ChannelSensitivity) * float(c.ChannelSensitivityCorrectionFactor) for c in group.ChannelDefinitionSequence]
        base = [float(c.ChannelBaseline) for c in group.ChannelDefinitionSequence]
        assert {c.ChannelSensitivityUnitsSequence[0].CodeValue for c in group.ChannelDefinitionSequence} == {"uV"}
        return raw, (raw * np.array(scale)[:, None] + np.array(base)[:, None]) * 1e-3

    raw, expected = decode(rhythm)
    np.testing.assert_allclose(ecg.signal, expected, atol=1e-6)
    assert raw[:, DICOM_GOLDEN_AT].astype(int).tolist() == DICOM_GOLDEN
    np.testing.assert_allclose(ecg.signal[:, DICOM_GOLDEN_AT], np.array(DICOM_GOLDEN) * 1.25e-3, atol=1e-6)
    beats = ecg.metadata["median_beats"]
    assert beats["signal"].shape == (12, 1200) and beats["sampling_rate"] == 1000
    np.testing.assert_allclose(beats["signal"], decode(median)[1], atol=1e-6)
    assert ecg.metadata["device_measurements"] == DICOM_DEVICE
    assert ecg.metadata["device_measurements_raw"]["QRS Duration"] == {"value": 75.0, "unit": "ms"}
    assert ecg.metadata["device_statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    assert (ecg.metadata["age"], ecg.metadata["sex"]) == (42, "Female")


def write_dicom(path, ecg, median=None, truncate_bytes=0):
    """A 12-lead ECG DICOM of ``ecg``: median group first (so the rhythm must be chosen by label), mixed units,
    a baseline and a correction factor, codes without meanings, a respiration channel, and device annotations."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def code(value, scheme, meaning):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
        return item

    numbers = {"I": 1, "II": 2, "III": 61, "aVR": 62, "aVL": 63, "aVF": 64, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8}
    # lead -> (code value, meaning, unit, sensitivity, correction, baseline in the unit)
    spec = {name: (f"5.6.3-9-{numbers[name]}", f"Lead {name}", "uV", 2.5, 1.0, 0.0) for name in STANDARD_LEADS}
    spec["I"] = ("5.6.3-9-1", "Lead I (Einthoven)", "mV", 0.0025, 1.0, 0.0)
    spec["II"] = ("5.6.3-9-2", "Lead II", "uV", 2.5, 0.8, 30.0)
    spec["V1"] = ("5.6.3-9-3", "", "uV", 2.5, 1.0, 0.0)
    spec["V2"] = ("2:4", "", "uV", 2.5, 1.0, 0.0)

    def group(label, signal):
        g = Dataset()
        g.MultiplexGroupLabel, g.SamplingFrequency = label, ecg.sampling_rate
        g.NumberOfWaveformChannels, g.NumberOfWaveformSamples = 13, signal.shape[1]
        g.WaveformBitsAllocated, g.WaveformSampleInterpretation = 16, "SS"
        channels, rows = [], []
        for name in STANDARD_LEADS:
            value, meaning, unit, sens, corr, base = spec[name]
            ch = Dataset()
            ch.ChannelSourceSequence = [code(value, "SCPECG" if "-" in value else "MDC", meaning)]
            ch.ChannelSensitivity, ch.ChannelSensitivityCorrectionFactor, ch.ChannelBaseline = sens, corr, base
            ch.ChannelSensitivityUnitsSequence = [code(unit, "UCUM", unit)]
            in_unit = signal[STANDARD_LEADS.index(name)].astype(np.float64) * (1e3 if unit == "uV" else 1.0)
            rows.append(np.round((in_unit - base) / (sens * corr)))
            channels.append(ch)
        resp = Dataset()
        resp.ChannelSourceSequence = [code("5.6.3-9-0", "SCPECG", "Respiration")]
        resp.ChannelSensitivity, resp.ChannelSensitivityUnitsSequence = 1, [code("Ohm", "UCUM", "ohm")]
        channels.append(resp)
        rows.append(np.zeros(signal.shape[1]))
        g.ChannelDefinitionSequence = channels
        g.WaveformData = np.stack(rows).T.astype("<i2").tobytes()
        return g

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientAge, ds.PatientSex = "ECG", "063Y", "M"
    rhythm = group("RHYTHM", ecg.signal)
    if truncate_bytes:
        rhythm.WaveformData = rhythm.WaveformData[:-truncate_bytes]
    ds.WaveformSequence = ([group("MEDIAN BEAT", median)] if median is not None else []) + [rhythm]
    notes = []
    for meaning, value, unit in [("PR Interval", 160, "ms"), ("QRS Duration", 94, "ms"), ("QT Interval", 0.38, "s"),
                                 ("QTc Interval", 416, "ms"), ("QRS Axis", -10, "deg")]:
        item = Dataset()
        item.ConceptNameCodeSequence = [code("x", "SCPECG", meaning)]
        item.MeasurementUnitsCodeSequence = [code(unit, "UCUM", unit)]
        item.NumericValue = value
        notes.append(item)
    text = Dataset()
    text.UnformattedTextValue = "Sinus rhythm"
    ds.WaveformAnnotationSequence = notes + [text]
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).WaveformSequence[-1].MultiplexGroupLabel == "RHYTHM"
    return path


def test_dicom_round_trip_chooses_rhythm_and_applies_units_baseline_correction(tmp_path, ref):
    median = ref.signal[:, 1000:1600]
    ecg = read_ecg(write_dicom(tmp_path / "ecg.dcm", ref, median=median))
    assert ecg.signal.shape == (12, 5000) and ecg.sampling_rate == 500 and ecg.metadata["waveform_group"] == 1
    step = np.full(12, 2.5e-3)
    step[1] = 2.0e-3  # lead II: 2.5 uV x correction 0.8
    assert np.all(np.abs(ecg.signal - ref.signal).max(axis=1) <= step / 2 + 1e-6)
    assert ecg.metadata["ignored_channels"] == [{"name": "Respiration", "reason": "unit 'Ohm' is not a voltage"}]
    assert ecg.metadata["original_leads"] == [*STANDARD_LEADS, "Respiration"]
    assert ecg.metadata["median_beats"]["signal"].shape == (12, 600)
    assert np.abs(ecg.metadata["median_beats"]["signal"] - median).max() <= 1.25e-3 + 1e-6
    assert ecg.metadata["device_measurements"] == dict(pr_interval_ms=160, qrs_duration_ms=94, qt_ms=380, qtc_ms=416,
                                                       axis_deg=-10)
    assert ecg.metadata["device_statements"] == ["Sinus rhythm"]
    assert (ecg.metadata["age"], ecg.metadata["sex"]) == (63, "Male")


# ---------------------------------------------------------------- HL7 aECG


def aecg_xml(ecg, leads=STANDARD_LEADS, scale_uv=2.5, increment=("0.002", "s"), extra_lead=False, beats=None) -> str:
    """An HL7 aECG of ``ecg``: per-lead origin (the lead's mean) and scale, a V7 copy when ``extra_lead``,
    representative beats as a derived series, measurements and a statement as annotations."""

    def sequence_set(signal, time_code, head):
        parts = [f'<component><sequence><code code="{time_code}" codeSystem="2.16.840.1.113883.5.4"/>'
                 f'<value xsi:type="GLIST_TS">{head}<increment value="{increment[0]}" unit="{increment[1]}"/></value>'
                 f'</sequence></component>']
        names = list(leads) + (["V7"] if extra_lead else [])
        for name in names:
            row = signal[STANDARD_LEADS.index("V6" if name == "V7" else name)].astype(np.float64) * 1e3
            origin = float(np.round(row.mean()))
            digits = " ".join(str(int(d)) for d in np.round((row - origin) / scale_uv))
            parts.append(f'<component><sequence><code code="MDC_ECG_LEAD_{name.upper()}" codeSystem="2.16.840.1.113883.6.24"/>'
                         f'<value xsi:type="SLIST_PQ"><origin value="{origin:g}" unit="uV"/>'
                         f'<scale value="{scale_uv}" unit="uV"/><digits>{digits}</digits></value></sequence></component>')
        return f"<component><sequenceSet>{''.join(parts)}</sequenceSet></component>"

    def note(code, value, unit):
        return (f'<component><annotation><code code="{code}" codeSystem="2.16.840.1.113883.6.24"/>'
                f'<value xsi:type="PQ" value="{value}" unit="{unit}"/></annotation></component>')

    derived = "" if beats is None else (
        '<derivation><derivedSeries><code code="REPRESENTATIVE_BEAT" codeSystem="2.16.840.1.113883.5.4"/>'
        + sequence_set(beats, "TIME_RELATIVE", '<head value="0" unit="s"/>') + "</derivedSeries></derivation>")
    annotations = ("<subjectOf><annotationSet>" + note("MDC_ECG_HEART_RATE", 72, "bpm") + note("MDC_ECG_TIME_PD_PR", 160, "ms")
                   + note("MDC_ECG_TIME_PD_QRS", 0.094, "s") + note("MDC_ECG_TIME_PD_QT", 380, "ms")
                   + note("MDC_ECG_TIME_PD_QTc", 416, "ms") + note("MDC_ECG_ANGLE_QRS_FRONT", -10, "deg")
                   + '<component><annotation><code code="MDC_ECG_INTERPRETATION" codeSystem="2.16.840.1.113883.6.24"/>'
                   '<component><annotation><code code="MDC_ECG_INTERPRETATION_STATEMENT" codeSystem="2.16.840.1.113883.6.24"/>'
                   '<value xsi:type="ST">Sinus rhythm</value></annotation></component></annotation></component>'
                   "</annotationSet></subjectOf>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<AnnotatedECG xmlns="urn:hl7-org:v3" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><id root="1.2.3"/>'
            '<componentOf><timepointEvent><componentOf><subjectAssignment><subject><trialSubject>'
            '<subjectDemographicPerson><administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>'
            "</subjectDemographicPerson></trialSubject></subject></subjectAssignment></componentOf></timepointEvent>"
            '</componentOf><component><series><code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>'
            + sequence_set(ecg.signal, "TIME_ABSOLUTE", '<head value="20240101120000.000"/>') + derived + annotations
            + "</series></component></AnnotatedECG>")


@pytest.mark.parametrize("increment", [("0.002", "s"), ("2", "ms")])
def test_aecg_round_trip(tmp_path, ref, increment):
    path = tmp_path / "aecg.xml"
    beats = ref.signal[:, 1000:1600]
    path.write_text(aecg_xml(ref, increment=increment, extra_lead=True, beats=beats))
    ecg = read_ecg(path)
    assert ecg.signal.shape == (13, 5000) and ecg.sampling_rate == 500 and ecg.leads == (*STANDARD_LEADS, "V7")
    assert np.abs(ecg.signal[:12] - ref.signal).max() <= 1.25e-3 + 1e-6  # half of the 2.5 uV scale
    assert ecg.metadata["extra_leads"] == ["V7"] and ecg.metadata["ignored_channels"] == []
    np.testing.assert_array_equal(ecg.lead("V7"), ecg.lead("V6"))  # the file's V7 is a copy of V6
    assert ecg.standard12().leads == STANDARD_LEADS and ecg.standard12().signal.shape == (12, 5000)
    assert np.abs(ecg.metadata["median_beats"]["signal"] - beats).max() <= 1.25e-3 + 1e-6
    assert ecg.metadata["device_measurements"] == dict(heart_rate=72, pr_interval_ms=160, qrs_duration_ms=94, qt_ms=380,
                                                       qtc_ms=416, axis_deg=-10)
    assert ecg.metadata["device_measurements_raw"]["MDC_ECG_TIME_PD_QRS"] == {"value": 0.094, "unit": "s"}
    assert ecg.metadata["device_statements"] == ["Sinus rhythm"] and ecg.metadata["sex"] == "Female"


# ---------------------------------------------------------------- ISHNE


def ishne_bytes(ecg, resolution_nv=None, magic=b"ISHNE1.0", comment=b"written by the ecglens tests") -> bytes:
    """An ISHNE 1.0 file of ``ecg`` laid out from the standard: magic, CRC-CCITT of the header, 512-byte header,
    variable block, int16 samples interleaved by lead."""
    n_leads, n = len(ecg.leads), ecg.n_samples
    resolution = list(resolution_nv or [2500] * n_leads)
    codes = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16][:n_leads]
    fixed = struct.pack("<iiii", len(comment), n, 522, 522 + len(comment)) + struct.pack("<h", 1)
    fixed += b"Ada".ljust(40, b"\0") + b"Lovelace".ljust(40, b"\0") + b"ID-1".ljust(20, b"\0")
    fixed += struct.pack("<hh", 2, 0) + struct.pack("<12h", 10, 12, 1815, 2, 3, 2024, 2, 3, 2024, 10, 20, 30)
    fixed += struct.pack("<h", n_leads) + struct.pack("<12h", *codes, *[-9] * (12 - n_leads))
    fixed += struct.pack("<12h", *[0] * 12) + struct.pack("<12h", *resolution, *[0] * (12 - n_leads))
    fixed += struct.pack("<h", 0) + b"Holter-1".ljust(40, b"\0") + struct.pack("<h", int(ecg.sampling_rate))
    fixed += b"\0" * (80 + 80 + 88)
    assert len(fixed) == 512
    crc = binascii.crc_hqx(fixed + comment, 0xFFFF)
    counts = np.round(ecg.signal.astype(np.float64) * 1e6 / np.array(resolution)[:, None]).T.astype("<i2")
    return magic + struct.pack("<H", crc) + fixed + comment + counts.tobytes()


def test_ishne_round_trip(tmp_path, ref):
    resolution = [2500] * 12
    resolution[6] = 1000  # V1 at 1 uV per unit
    path = tmp_path / "holter.ecg"
    path.write_bytes(ishne_bytes(ref, resolution))
    ecg = read_ecg(path)
    assert ecg.signal.shape == (12, 5000) and ecg.sampling_rate == 500 and ecg.leads == STANDARD_LEADS
    tolerance = np.array(resolution) * 1e-6 / 2 + 1e-6
    assert np.all(np.abs(ecg.signal - ref.signal).max(axis=1) <= tolerance)
    assert ecg.metadata["sex"] == "Female" and ecg.metadata["recorder"] == "Holter-1"
    assert ecg.metadata["record_date"] == "2024-03-02" and ecg.metadata["start_time"] == "10:20:30"
    assert ecg.metadata["comments"] == "written by the ecglens tests"
    renamed = tmp_path / "holter.ishne"
    renamed.write_bytes(path.read_bytes())
    np.testing.assert_array_equal(read_ecg(renamed).signal, ecg.signal)


def test_ishne_damaged_files(tmp_path, ref):
    good = ishne_bytes(ref)
    cases = {
        "magic.ecg": b"NOTISHNE" + good[8:],
        "annotations.ecg": ishne_bytes(ref, magic=b"ANN  1.0"),
        "crc.ecg": good[:20] + b"X" + good[21:],
        "truncated.ecg": good[:-100],
        "short.ecg": good[:300],
    }
    problems = {}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        problems[name] = _raises_naming(path, lambda: read_ishne(path))
    assert "not an ISHNE file" in problems["magic.ecg"] and "annotation file" in problems["annotations.ecg"]
    assert "checksum" in problems["crc.ecg"] and "truncated" in problems["truncated.ecg"]
    assert "truncated header" in problems["short.ecg"]


# ---------------------------------------------------------------- dispatch and malformed input


def test_every_sample_is_found_and_dispatched_by_root_element(formats_dir, tmp_path, ref):
    found = find_records(formats_dir)
    assert sorted(p.name for p in found) == sorted([MUSE_SAMPLE.name, *PHILIPS_DEVICE])
    assert read_ecg(MUSE_SAMPLE).metadata["format"] == "muse"
    (tmp_path / "a.xml").write_text(aecg_xml(ref))
    (tmp_path / "other.xml").write_text("<catalog><book/></catalog>")
    assert [p.name for p in find_records(tmp_path)] == ["a.xml"]
    assert read_ecg(tmp_path / "a.xml").metadata["format"] == "aecg"
    assert "root element <catalog>" in _raises_naming(tmp_path / "other.xml", lambda: read_ecg(tmp_path / "other.xml"))


def test_readers_refuse_another_formats_root(tmp_path, ref):
    path = tmp_path / "aecg.xml"
    path.write_text(aecg_xml(ref))
    for reader in (read_muse, read_philips):
        _raises_naming(path, lambda: reader(path))
    muse = tmp_path / "muse.xml"
    muse.write_text(muse_xml(ref))
    _raises_naming(muse, lambda: read_aecg(muse))


def test_rate_given_must_match_the_file(tmp_path, ref, dicom_path):
    path = tmp_path / "muse.xml"
    path.write_text(muse_xml(ref))
    assert "500 Hz" in _raises_naming(path, lambda: read_ecg(path, sampling_rate=250))
    _raises_naming(dicom_path, lambda: read_ecg(dicom_path, sampling_rate=500))


def test_truncated_and_short_base64_name_the_lead(tmp_path, ref):
    text = muse_xml(ref)
    data = re.search(r"<LeadID>II</LeadID><WaveFormData>([^<]*)</WaveFormData>", text)
    compact = "".join(data.group(1).split())
    for name, replacement, problem in [("cut.xml", compact[:-3], "invalid or truncated base64"),
                                       ("short.xml", compact[:-8], "bytes of samples")]:
        path = tmp_path / name
        path.write_text(text[:data.start(1)] + replacement + text[data.end(1):])
        message = _raises_naming(path, lambda: read_ecg(path))
        assert "lead II" in message and problem in message


def test_missing_leads_read_and_are_named_by_standard12(tmp_path, ref):
    muse = tmp_path / "no_ii.xml"
    muse.write_text(muse_xml(ref, leads=("I", "V1", "V2", "V3", "V4", "V5", "V6")))
    ecg = read_ecg(muse)
    assert ecg.leads == ("I", "V1", "V2", "V3", "V4", "V5", "V6") and ecg.metadata["derived_leads"] == []
    message = _raises_naming(muse, ecg.standard12)
    assert "missing lead(s) ['II', 'III', 'aVR', 'aVL', 'aVF']" in message
    aecg = tmp_path / "six.xml"
    aecg.write_text(aecg_xml(ref, leads=STANDARD_LEADS[:6]))
    six = read_ecg(aecg)
    assert six.leads == STANDARD_LEADS[:6]
    assert "missing lead(s) ['V1', 'V2', 'V3', 'V4', 'V5', 'V6']" in _raises_naming(aecg, six.standard12)


def test_dicom_damaged_files(tmp_path, ref):
    truncated = write_dicom(tmp_path / "truncated.dcm", ref, truncate_bytes=100)
    assert "WaveformData holds" in _raises_naming(truncated, lambda: read_ecg(truncated))
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a DICOM file" * 64)
    _raises_naming(garbage, lambda: read_dicom(garbage))


def test_damaged_philips_waveform(tmp_path, formats_dir):
    text = (PHILIPS_DIR / "129DYPRG.XML").read_text()
    data = re.search(r"(<parsedwaveforms[^>]*>)([^<]*)<", text)
    path = tmp_path / "damaged.xml"
    path.write_text(text[:data.start(2)] + "QUFB" * 100 + text[data.end(2):])
    assert "cannot decode the Philips waveforms" in _raises_naming(path, lambda: read_ecg(path))


BILLION_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE RestingECG [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{"&lol{};".format(i - 1 if i > 1 else "") * 10}">' for i in range(1, 10))
                  + "]>\n<RestingECG>&lol9;</RestingECG>")


def test_xml_entities_and_external_references_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "TOP-SECRET">')
    cases = {
        "laughs.xml": BILLION_LAUGHS,
        "external_entity.xml": f'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
                               "<RestingECG>&x;</RestingECG>",
        "parameter_entity.xml": f'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY % p SYSTEM "{dtd.as_uri()}"> %p;]>'
                                "<RestingECG>&leak;</RestingECG>",
        # an external DTD is never fetched, so the entity it would define stays undefined
        "external_dtd.xml": f'<?xml version="1.0"?><!DOCTYPE RestingECG SYSTEM "{dtd.as_uri()}"><RestingECG>&leak;</RestingECG>',
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        for reader in (read_ecg, read_muse):
            message = _raises_naming(path, lambda: reader(path))
            assert "TOP-SECRET" not in message


def test_oversized_and_special_files_are_refused(tmp_path):
    big = tmp_path / "big.xml"
    with open(big, "wb") as fh:
        fh.write(b"<RestingECG>")
        fh.truncate(XML_LIMIT + 1)  # sparse: nothing is written
    for reader in (read_ecg, read_muse, read_philips, read_aecg):
        assert "exceeds the 64 MiB limit" in _raises_naming(big, lambda: reader(big))
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.xml"
        os.mkfifo(fifo)
        for reader in (read_ecg, read_muse, read_ishne, read_dicom):
            assert "not a regular file" in _raises_naming(fifo, lambda: reader(fifo))
