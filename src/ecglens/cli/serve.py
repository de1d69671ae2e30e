"""``ecglens serve``: the local viewer (FastAPI + uvicorn, 127.0.0.1 by default)."""
from __future__ import annotations

from . import COMMANDS
from .report import add_page_arguments, page_options


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help=COMMANDS["serve"],
                              description="A local web viewer: upload a record in any supported format and see its "
                                          "report; browse a folder of records; review the ProtoECGNet prototypes "
                                          "(ratings go to DIR/ratings.csv). Only DIR is written to; uploads are kept "
                                          "there only when asked. Needs `pip install 'ecglens[serve]'`.")
    p.add_argument("--dir", default="runs/serve", metavar="DIR",
                   help="working directory: prototype gallery, ratings.csv, kept uploads (default runs/serve)")
    p.add_argument("--records", default=None, metavar="FOLDER", help="a folder of records to browse")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted, MB (default 20)")
    add_page_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import importlib.util

    from ..errors import ECGError

    missing = [m for m in ("fastapi", "uvicorn", "python_multipart", "jinja2") if importlib.util.find_spec(m) is None]
    if missing:
        raise ECGError(None, f"the viewer needs {', '.join(missing)}: pip install 'ecglens[serve]'")
    from ..report import Reporter
    from ..report.server import Viewer, clean_uploads_tmp, serve

    if args.records is not None:
        from pathlib import Path

        if not Path(args.records).is_dir():
            raise ECGError(args.records, "--records must be a folder")
    clean_uploads_tmp(args.dir)
    print("loading models ...")
    reporter = Reporter(args.models, page_options(args), workdir=args.dir, progress=True)
    protos = [m.name for m in reporter.models if m.kind.name == "protoecgnet"]
    viewer = Viewer(args.dir, reporter, records=args.records, gallery_model=protos[0] if protos else None,
                    max_upload_bytes=int(args.max_upload_mb * 2 ** 20))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: other machines can reach this viewer")
    print(f"ecglens viewer on http://{args.host}:{args.port}/  (working directory {viewer.directory}; Ctrl-C stops)")
    serve(viewer, args.host, args.port)
    return 0
