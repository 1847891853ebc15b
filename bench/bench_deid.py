"""De-identifying already-parsed datasets: medveil's engine vs dicognito and pydicom/deid.

Run: pip install dicognito deid && python bench/bench_deid.py [--n 200]
Each tool gets freshly parsed datasets (parsing is not timed: by default the whole
structure, sequence items included, is parsed and element values are left for the tool to
decode; with --lazy only the top level is, so sequence parsing is timed) and
de-identifies them in place; the table gives ms per dataset and how many times faster
medveil is.
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian


def nested_dataset() -> bytes:
    """A dataset of about 2,000 elements in nested sequences, with PHI at every level."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.9.3.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.StudyDate = "Doe^Jane", "PID-77", "20240101"
    items = []
    for i in range(60):
        item = Dataset()
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.9.3.{i + 2}"
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.PatientName = "Doe^Jane"
        item.ContentDate = "20240101"
        inner = []
        for j in range(6):
            leaf = Dataset()
            leaf.CodeValue = f"C{j}"
            leaf.CodingSchemeDesignator = "DCM"
            leaf.CodeMeaning = "finding for Jane Doe"
            leaf.TextValue = "seen by Dr Who on 20240101"
            inner.append(leaf)
        item.ContentSequence = Sequence(inner)
        items.append(item)
    ds.ReferencedImageSequence = Sequence(items)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def corpus() -> dict[str, bytes]:
    """The datasets benchmarked, as file bytes."""
    return {
        "CT (pydicom CT_small)": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        "MR (pydicom MR_small)": Path(get_testdata_file("MR_small.dcm")).read_bytes(),
        "SR-like, ~2,000 nested elements": nested_dataset(),
    }


def parse(raw: bytes, sequences: bool) -> Dataset:
    """Read a dataset; with ``sequences``, also parse every sequence item (values stay raw)."""
    ds = pydicom.dcmread(io.BytesIO(raw))
    if sequences:
        stack = [ds]
        while stack:
            item = stack.pop()
            for tag in list(item._dict):
                elem = item._dict[tag]
                if elem.VR == "SQ":
                    stack.extend(item[tag].value)
    return ds


def time_tool(
    fn: Callable[[Dataset], object], raw: bytes, n: int, repeat: int = 5, sequences: bool = True
) -> float:
    """Best of `repeat` rounds of the mean CPU time of fn over n fresh datasets, in ms.

    CPU time of this process (not wall time), so other load on the machine costs less;
    every tool is measured the same way in the same run.
    """
    best = float("inf")
    for _ in range(repeat):
        datasets = [parse(raw, sequences) for _ in range(n)]
        t0 = time.process_time()
        for ds in datasets:
            fn(ds)
        best = min(best, (time.process_time() - t0) / n * 1000)
    return best


def main() -> None:
    """Print ms per dataset and ratios for every available tool."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument(
        "--lazy",
        action="store_true",
        help="parse only the top level before timing (sequence parsing is then timed too)",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    header_only = Policy(
        options=tuple(o for o in Policy().options if o is not Option.CLEAN_PIXEL_DATA)
    )
    engine = Deidentifier(header_only, bytes(range(32)))
    tools: dict[str, Callable[[Dataset], object]] = {"medveil": engine.apply}
    try:
        from dicognito.anonymizer import Anonymizer

        tools["dicognito"] = Anonymizer(seed="bench").anonymize
    except ImportError:
        print("dicognito not installed: skipped")
    try:
        from deid.dicom import replace_identifiers

        tools["pydicom/deid"] = lambda ds: replace_identifiers(
            [ds], save=False, remove_private=True
        )
    except ImportError:
        print("deid not installed: skipped")
    print(f"{'dataset':34} {'tool':14} {'ms/dataset':>10} {'medveil x faster':>17}")
    for name, raw in corpus().items():
        times = {
            tool: time_tool(
                fn,
                raw,
                args.n if tool != "pydicom/deid" else max(args.n // 10, 5),
                sequences=not args.lazy,
            )
            for tool, fn in tools.items()
        }
        for tool, ms in times.items():
            ratio = "" if tool == "medveil" else f"{ms / times['medveil']:.1f}"
            print(f"{name:34} {tool:14} {ms:10.3f} {ratio:>17}")


if __name__ == "__main__":
    main()
