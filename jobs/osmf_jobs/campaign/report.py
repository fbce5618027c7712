"""The campaign's gallery: one self-contained HTML page (images as data: URIs, inline CSS, no scripts).

Sections: the campaign's own metrics; the stage metrics of the whole pipeline (every manifest reachable
from the campaign's inputs: grouping, GAIP dataset, G-MLLM, GRM, Group-DPO); then per product the
cut-out and, per group, the kept image with the group's size, its defining attributes, where the image
came from (generated, with its prompt, or a logged creative), the scorer's score and the best
generated image's score, beside the one-size image.

Defining attributes: for each attribute the grouping was allowed to read, the values whose share in
the group is at least REPORT_MIN_LIFT times their share among all the product's users (and at least
REPORT_MIN_SHARE of the group), highest lift first. Only the grouping's allow-list is read from the
users table, never any other column.
"""

from __future__ import annotations

import base64
import html
import io
from collections import deque
from typing import Any, Callable

from osmf_jobs import tables
from osmf_jobs.runtime import InvalidInput
from osmf_core.api import Kind
from osmf_core.layout import Grouping
from osmf_core.store import ArtifactStore, open_store, read_manifest

# The report embeds its images, so it is bounded: the first products by id, thumbnails at most this big.
REPORT_MAX_PRODUCTS = 100
REPORT_THUMBNAIL = 256
# An attribute value "defines" a group when its share there is at least this many times its share
# among all the product's users, and at least REPORT_MIN_SHARE of the group has it.
REPORT_MIN_LIFT = 1.25
REPORT_MIN_SHARE = 0.2
REPORT_MAX_ATTRIBUTES = 3

Profile = list[tuple[str, str, float, float]]  # (attribute, value, share in group, share in product)


# ---- data gathering ------------------------------------------------------------------------------


def allowed_attributes(grouping: ArtifactStore) -> list[str]:
    """spec.userAttributes of the grouping, as it recorded them (model config, metrics or manifest)."""
    from osmf_jobs.paag.export import recorded_attributes

    return recorded_attributes(grouping)


def defining_attributes(grouping: ArtifactStore, data: ArtifactStore, products: list[str]) -> tuple[dict[tuple[str, int], Profile], str]:
    """(profiles per (product, group), a note on where they come from) for the given products."""
    attributes = allowed_attributes(grouping)
    if not attributes:
        return {}, "the grouping recorded no attribute allow-list, so no attributes are shown"
    if not grouping.exists(Grouping.ASSIGNMENTS):
        return {}, f"the grouping has no {Grouping.ASSIGNMENTS}, so no attributes are shown"
    assignments = tables.read_parquet(grouping, Grouping.ASSIGNMENTS, ["product_id", "user_id", "group_id"], Kind.AUDIENCE_GROUPING)
    assignments = assignments.assign(product_id=assignments["product_id"].astype(str))
    assignments = assignments[assignments["product_id"].isin(set(products))]
    try:
        users = tables.read_users(data, attributes)  # projected: only user_id + the allow-list is read
    except InvalidInput as error:
        return {}, f"the users table cannot be read for the grouping's attributes ({error})"
    present = list(attributes)
    frame = assignments.assign(user_id=assignments["user_id"].astype(str), group_id=assignments["group_id"].astype(int)).merge(users, on="user_id")
    profiles: dict[tuple[str, int], Profile] = {}
    product_sizes = frame.groupby("product_id").size()
    group_sizes = frame.groupby(["product_id", "group_id"]).size()
    for attribute in present:
        col = frame[attribute].astype(str)
        per_product = frame.assign(_v=col).groupby(["product_id", "_v"]).size()
        per_group = frame.assign(_v=col).groupby(["product_id", "group_id", "_v"]).size()
        for (pid, gid, value), count in per_group.items():
            share_group = count / group_sizes[(pid, gid)]
            share_product = per_product[(pid, value)] / product_sizes[pid]
            if share_group >= REPORT_MIN_SHARE and share_group >= REPORT_MIN_LIFT * share_product:
                profiles.setdefault((pid, int(gid)), []).append((attribute, value, float(share_group), float(share_product)))
    for key, items in profiles.items():
        items.sort(key=lambda t: (-t[2] / t[3], t[0], t[1]))
        profiles[key] = items[: REPORT_MAX_ATTRIBUTES]
    return profiles, f"values over-represented in the group (share ≥ {REPORT_MIN_LIFT}× the product's audience), from {', '.join(present)}"


def pipeline_stages(inputs: dict[str, Any], max_stages: int = 32) -> list[dict[str, Any]]:
    """Every completed run reachable from the inputs through manifests, upstream first, each once."""
    seen: set[str] = set()
    stages: list[dict[str, Any]] = []
    queue = deque((role, art["uri"] if isinstance(art, dict) else art.uri) for role, art in sorted(inputs.items()))
    while queue and len(stages) < max_stages:
        role, uri = queue.popleft()
        key = uri.rstrip("/")
        if key in seen:
            continue
        seen.add(key)
        try:
            found = read_manifest(open_store(uri))
        except (OSError, ValueError):
            found = None
        if found is None:
            continue  # raw data, or a run that is not there any more
        manifest, _ = found
        stages.append({
            "role": role, "kind": manifest.get("kind", "?"), "name": manifest.get("name", "?"), "uri": uri,
            "metrics": {k: v for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "end": manifest.get("endTime"),
        })
        for item in manifest.get("inputs", []):
            if item.get("uri"):
                queue.append((item.get("name", "?"), item["uri"]))
    order = {Kind.AUDIENCE_GROUPING: 0, Kind.GAIP_DATASET: 1, Kind.GMLLM_TRAINING: 2, Kind.GROUP_DPO_RUN: 3, Kind.AD_IMAGE_CAMPAIGN: 4}
    return sorted(stages, key=lambda s: (order.get(s["kind"], 9), s.get("end") or "", s["name"]))


# ---- rendering -----------------------------------------------------------------------------------


def thumbnail_data_uri(raw: bytes, limit: int = REPORT_THUMBNAIL) -> str:
    """A data: URI of the image scaled to fit `limit` (PNG when it has transparency, else JPEG)."""
    from PIL import Image

    image = Image.open(io.BytesIO(raw))
    image.load()
    if max(image.size) > limit:
        image.thumbnail((limit, limit), Image.LANCZOS)
    buffer = io.BytesIO()
    if image.mode in ("RGBA", "LA", "P"):
        image.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=88)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _metrics_list(metrics: dict[str, Any]) -> str:
    return "".join(f"<span class=m><b>{html.escape(k)}</b> {_fmt(v)}</span>" for k, v in metrics.items()) or "<span class=muted>no metrics</span>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
.muted{color:#667}.m{display:inline-block;margin:2px 10px 2px 0;font-size:13px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #dde;padding:4px 8px;text-align:left;vertical-align:top}
.product{background:#fff;border:1px solid #dde;border-radius:8px;padding:12px 16px;margin:16px 0}
.row{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:200px;font-size:12px}figure img{width:200px;height:200px;object-fit:contain;border-radius:4px;
background:repeating-conic-gradient(#eee 0% 25%,#fff 0% 50%) 50%/16px 16px;display:block}
figcaption{margin-top:4px}.prompt{font-style:italic;color:#334}.score{font-weight:600}
.onesize figcaption{color:#553}.tag{display:inline-block;background:#eef;border-radius:3px;padding:0 4px;margin:1px 2px 1px 0}
"""


def build_report(campaign: dict[str, Any], metrics: dict[str, Any], stages: list[dict[str, Any]],
                 profiles: dict[tuple[str, int], Profile], profile_note: str,
                 read_image: Callable[[str], bytes]) -> str:
    """The whole page. `read_image(uri)` returns an image's bytes (run-relative paths or absolute URIs)."""
    title = f"OSMF campaign {campaign.get('namespace', '')}/{campaign.get('name', '')}"
    products = campaign["products"]
    selection = campaign.get("selection") or {}
    scorer = selection.get("used", "score")
    shown = products[: REPORT_MAX_PRODUCTS]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<div class=muted>generator {html.escape(campaign['generator']['kind'])}/{html.escape(str(campaign['generator']['name']))}"
        f" · scorer {html.escape(scorer)} (requested {html.escape(str(selection.get('requested', '?')))};"
        f" held-out pairwise accuracy {html.escape(_accuracies(selection.get('heldout_pairwise_accuracy') or {}))})"
        f" · logged creatives {'compete' if selection.get('includeLogged', True) else 'excluded'}"
        f" · {campaign['imagesPerGroup']} candidate(s) per group · rendering {html.escape(campaign['rendering'].get('backend', '?'))}"
        f" {campaign['rendering'].get('size', '?')}px</div>",
        "<h2>Campaign</h2>", f"<div>{_metrics_list(metrics)}</div>",
        "<h2>Pipeline</h2><table><tr><th>Stage</th><th>Role</th><th>Metrics</th></tr>",
    ]
    for stage in stages:
        parts.append(f"<tr><td>{html.escape(stage['kind'])}/{html.escape(str(stage['name']))}</td><td>{html.escape(stage['role'])}</td>"
                     f"<td>{_metrics_list(stage['metrics'])}</td></tr>")
    parts.append(f"<tr><td>AdImageCampaign/{html.escape(str(campaign.get('name', '')))}</td><td>this run</td><td>{_metrics_list(metrics)}</td></tr></table>")
    parts.append(f"<h2>Products</h2><div class=muted>Group attributes: {html.escape(profile_note)}."
                 + (f" Showing {len(shown)} of {len(products)} products; campaign.json lists all." if len(shown) < len(products) else "")
                 + "</div>")
    for product in shown:
        pid = product["product_id"]
        parts.append(f"<section class=product id=\"p-{html.escape(pid)}\"><h3>{html.escape(product['title'])} "
                     f"<span class=muted>({html.escape(pid)})</span></h3><div class=row>")
        parts.append(_figure(read_image(product["cutout_uri"]), "cut-out", "<b>product cut-out</b>", "cutout"))
        for group in product["groups"]:
            tags = "".join(
                f"<span class=tag>{html.escape(a)} {html.escape(v)} {sg:.0%} <span class=muted>(vs {sp:.0%})</span></span>"
                for a, v, sg, sp in profiles.get((pid, int(group["group_id"])), [])
            ) or "<span class=muted>no distinctive attribute</span>"
            caption = (f"<b>group {group['group_id']}</b> · {group['size']} users<br>{tags}<br>"
                       f"{_origin(group)}<br>"
                       f"<span class=score>{html.escape(scorer)} {_fmt(group.get('score'))}</span>"
                       + (f" <span class=muted>(one-size {_fmt(group.get('onesize_score'))}"
                          + (f"; best generated {_fmt(group['generated'].get('score'))}" if group.get("source") == "logged" and group.get("generated") else "")
                          + ")</span>" if group.get("onesize_score") is not None else ""))
            parts.append(_figure(read_image(group["image"]), f"group {group['group_id']}", caption, "group"))
        onesize = product["onesize"]
        caption = (f"<b>one-size</b> · from {html.escape(str(onesize.get('owner', onesize.get('source', '?'))))}<br>{_origin(onesize)}<br>"
                   f"<span class=score>{html.escape(scorer)} {_fmt(onesize.get('score'))}</span> <span class=muted>(audience-weighted)</span>")
        parts.append(_figure(read_image(onesize["image"]), "one-size", caption, "onesize"))
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "".join(parts)


def _origin(record: dict[str, Any]) -> str:
    """Where an image came from: a generated prompt, or a logged creative by id."""
    if record.get("source") == "logged":
        return f"<span class=tag>logged</span> creative {html.escape(str(record.get('image_id')))}"
    return f"<span class=tag>generated</span> <span class=prompt>“{html.escape(str(record.get('prompt') or ''))}”</span>"


def _accuracies(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in sorted(values.items())) or "not measured"


def _figure(raw: bytes, alt: str, caption: str, cls: str) -> str:
    return f"<figure class={cls}><img alt=\"{html.escape(alt)}\" src=\"{thumbnail_data_uri(raw)}\"><figcaption>{caption}</figcaption></figure>"


def image_reader(run: ArtifactStore) -> Callable[[str], bytes]:
    """Bytes of an image named by a run-relative path or an absolute URI."""

    def read(uri: str) -> bytes:
        store, rel = tables.resolve_uri(run, uri)
        return store.read_bytes(rel)

    return read

