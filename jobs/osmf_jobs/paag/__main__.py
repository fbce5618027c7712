"""Assignment and scoring from a grouping artifact.

    python -m osmf_jobs.paag assign --artifact URI --product ID --user '{"age": "25-34", ...}'
        prints the group id
    python -m osmf_jobs.paag assign --artifact URI --users users.parquet [--products ID ...] --out groups.parquet
        assigns every user of the file (user_id + the grouping's attributes) to a group of every product
        (the grouping's, or those listed), as the predictor would; writes user_id, product_id, group_id
    python -m osmf_jobs.paag score --artifact URI --data URI --impressions FILE --out FILE
        writes the impressions (parquet or csv; user_id, product_id, image_id, ...) with a p_click column;
        user attributes come from the data root's users table (only the model's attributes are read);
        creatives the model has not seen are encoded from the data root's images table.

Exit codes: 0 ok, 65 bad input (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from osmf_core.store import open_store

INVALID = 65


def _fail(message: str) -> int:
    print(f"osmf: invalid input: {' '.join(message.split())}", file=sys.stderr)
    return INVALID


def _read_frame(path: str, what: str):
    """A csv file, or a parquet table through the jobs' reader (a file or a directory of parts)."""
    import pandas as pd

    from osmf_jobs.tables import read_parquet

    if path.endswith(".csv"):
        return pd.read_csv(path, dtype={"user_id": str, "product_id": str, "image_id": str})
    return read_parquet(open_store(Path(path).parent), Path(path).name, what=what)


def _write_frame(frame, path: str) -> None:
    from osmf_jobs.tables import write_parquet

    if path.endswith(".csv"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    else:
        write_parquet(open_store(Path(path).parent), Path(path).name, frame)


def assign(args: argparse.Namespace) -> int:
    from osmf_jobs.paag.assign import Assigner, UnknownProduct

    if args.users:
        return assign_audience(args)
    if not args.product or args.user is None:
        return _fail("give --product and --user for one user, or --users FILE --out FILE for an audience")
    try:
        user = json.loads(args.user)
    except json.JSONDecodeError as error:
        return _fail(f"--user is not JSON ({error.msg}); pass an object such as '{{\"age\": \"25-34\"}}'")
    if not isinstance(user, dict):
        return _fail("--user must be a JSON object of attribute name -> value")
    try:
        assigner = Assigner.load(args.artifact)
    except FileNotFoundError as error:
        return _fail(f"--artifact {args.artifact}: {error}; give the run directory of a finished AudienceGrouping")
    try:
        print(assigner.assign(args.product, user))
    except UnknownProduct as error:
        return _fail(str(error))
    return 0


def assign_audience(args: argparse.Namespace) -> int:
    """Batch assignment for offline audiences: every user of --users × every product."""
    import pandas as pd

    from osmf_jobs.paag.assign import Assigner

    if not args.out:
        return _fail("--users needs --out FILE (.parquet or .csv) for the assignments")
    try:
        assigner = Assigner.load(args.artifact)
    except FileNotFoundError as error:
        return _fail(f"--artifact {args.artifact}: {error}; give the run directory of a finished AudienceGrouping")
    from osmf_jobs.runtime import InvalidInput

    try:
        users = _read_frame(args.users, "--users")
    except InvalidInput as error:
        return _fail(f"{error}; give a parquet or csv file")
    except (OSError, ValueError) as error:
        return _fail(f"--users {args.users}: cannot read ({error.__class__.__name__}); give a parquet or csv file")
    if "user_id" not in users.columns:
        return _fail(f"--users {args.users}: column user_id missing")
    absent = [a for a in assigner.attributes if a not in users.columns]
    if absent:
        return _fail(f"--users {args.users}: attribute column(s) {', '.join(absent)} missing; the grouping reads {', '.join(assigner.attributes)}")
    products = list(dict.fromkeys(args.products)) if args.products else sorted(assigner.products())
    unknown = [p for p in products if p not in set(assigner.products())]
    if unknown:
        return _fail(f"--products: {unknown[0]!r} has no groups in {args.artifact}; list products the grouping covers")
    users = users.assign(user_id=users["user_id"].astype(str))
    frames = [pd.DataFrame({"user_id": users["user_id"], "product_id": product,
                            "group_id": assigner.assign_many([product] * len(users), users)}) for product in products]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["user_id", "product_id", "group_id"])
    _write_frame(out, args.out)
    print(json.dumps({"out": args.out, "users": int(len(users)), "products": len(products), "rows": int(len(out))}))
    return 0


def score(args: argparse.Namespace) -> int:
    import numpy as np

    from osmf_jobs import tables as TB
    from osmf_jobs.paag.assign import Assigner, UnknownProduct
    from osmf_jobs.runtime import InvalidInput

    try:
        assigner = Assigner.load(args.artifact, with_groups=False)
    except FileNotFoundError as error:
        return _fail(f"--artifact {args.artifact}: {error}; give the run directory of a finished AudienceGrouping")
    try:
        frame = _read_frame(args.impressions, "--impressions")
    except InvalidInput as error:
        return _fail(f"{error}; give a parquet or csv file")
    except (OSError, ValueError) as error:
        return _fail(f"--impressions {args.impressions}: cannot read ({error.__class__.__name__}); give a parquet or csv file")
    missing = [c for c in ("user_id", "product_id", "image_id") if c not in frame.columns]
    if missing:
        return _fail(f"--impressions {args.impressions}: column(s) {', '.join(missing)} missing")
    try:
        data = open_store(args.data)
        users = TB.read_users(data, assigner.attributes)
        rows = frame[["user_id"]].merge(users, on="user_id", how="left")
        unknown_users = rows[assigner.attributes[0]].isna() if assigner.attributes else None
        if unknown_users is not None and unknown_users.any():
            return _fail(f"--impressions: user_id {rows['user_id'][unknown_users].iloc[0]!r} is not in table 'users' of {args.data}")
        image_ids = frame["image_id"].astype(str).tolist()
        new = sorted({i for i in image_ids if i not in assigner.creative_index})
        if new:
            creative_v = _new_creatives(assigner, data, new, image_ids)
            p = assigner.p_click_many(frame["product_id"].astype(str).tolist(), rows, creative_v=creative_v)
        else:
            p = assigner.p_click_many(frame["product_id"].astype(str).tolist(), rows, image_ids)
    except UnknownProduct as error:
        return _fail(str(error))
    except InvalidInput as error:
        return _fail(str(error))
    out = frame.copy()
    out["p_click"] = np.asarray(p, dtype=np.float64)
    _write_frame(out, args.out)
    print(json.dumps({"out": args.out, "rows": int(len(out)), "mean_p_click": float(out["p_click"].mean()) if len(out) else None}))
    return 0


def _new_creatives(assigner, data, new: list[str], image_ids: list[str]):
    """Creative vectors for every row; unseen creatives are encoded with the grouping's image encoder."""
    import numpy as np

    from osmf_jobs import tables as TB
    from osmf_jobs.paag.encoders import ImageEncoder
    from osmf_jobs.runtime import InvalidInput

    images = TB.read_table(data, TB.Dataset.IMAGES, TB.SCHEMAS[TB.Dataset.IMAGES])
    images = images[images["image_id"].isin(set(new))]
    absent = sorted(set(new) - set(images["image_id"]))
    if absent:
        raise InvalidInput(f"image_id {absent[0]!r} is neither in the grouping artifact nor in table 'images' of {data.uri}")
    encoder = ImageEncoder(assigner.config["image_encoder"])
    pictures = [TB.read_image(data, uri, f"table 'images': image {i!r}") for i, uri in zip(images["image_id"], images["image_uri"])]
    stats, _ = encoder.encode(pictures)
    vectors = dict(zip(images["image_id"], assigner.creative_vectors(stats)))
    known = assigner.model.a["creative.v"]
    return np.stack([vectors[i] if i in vectors else known[assigner.creative_index[i]] for i in image_ids])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osmf grouping", description="Assign users to groups or score impressions with a grouping artifact.")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assign", help="the group of one user for a product, or of an audience file for many products")
    a.add_argument("--artifact", required=True, help="the AudienceGrouping run directory (s3://, file:// or a path)")
    a.add_argument("--product", help="product id (one user)")
    a.add_argument("--user", help="user attributes as a JSON object (one user)")
    a.add_argument("--users", help="parquet or csv of users: user_id and the grouping's attributes (an audience)")
    a.add_argument("--products", nargs="+", metavar="ID", help="products to assign the audience to (default: all the grouping's)")
    a.add_argument("--out", help="output file of the audience's assignments (.parquet or .csv): user_id, product_id, group_id")
    s = sub.add_parser("score", help="add p_click to impressions")
    s.add_argument("--artifact", required=True, help="the AudienceGrouping run directory")
    s.add_argument("--data", required=True, help="the logs root with the users (and images) tables")
    s.add_argument("--impressions", required=True, help="parquet or csv with user_id, product_id, image_id")
    s.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return assign(args) if args.command == "assign" else score(args)


if __name__ == "__main__":
    from osmf_jobs.runtime import exit_cli

    exit_cli(main)
