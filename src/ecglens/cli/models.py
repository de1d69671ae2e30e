"""``ecglens models``: the shipped models and the registered model families."""
from __future__ import annotations

import json

from . import COMMANDS


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help=COMMANDS["models"],
                              description="List the models shipped inside the package (each loads offline by "
                                          "name) and the model families that can be trained and loaded.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models.registry import families
    from ..pretrained import list_pretrained, pretrained_dir

    shipped = []
    for name in list_pretrained():
        config = json.loads((pretrained_dir(name) / "config.json").read_text())
        shipped.append({"name": name, "kind": config.get("kind"), "label_set": config.get("label_set"),
                        "labels": len(config.get("labels") or config.get("qlst", {}).get("statements") or [])})
    fams = [{"name": f.name, "description": f.description, "kinds": [k.name for k in f.kinds],
             "train": [c.name for c in f.train], "stages": list(f.stages)} for f in families()]
    if args.json:
        print(json.dumps({"shipped": shipped, "families": fams}, indent=2))
        return 0
    print("shipped models (ecglens predict/explain NAME ...):")
    for m in shipped:
        print(f"  {m['name']:<14} kind {m['kind']:<14} {m['labels']:>3} statements  label set {m['label_set']}")
    print("\nmodel families (ecglens train FAMILY ...):")
    for f in fams:
        print(f"  {f['name']:<12} {f['description']}")
        print(f"  {'':<12} checkpoint kinds: {', '.join(f['kinds'])}; stages: {', '.join(f['stages'])}")
    return 0
