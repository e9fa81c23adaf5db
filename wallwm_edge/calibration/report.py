"""The report a person looks at: report.png (one row per camera) and report.html (verdict, table, advice).

Row per camera: (1) reprojection residuals (dx, dy) of every corner, outliers in red, with the 1 px circle;
(2) where in the image the corners were detected (the coverage grid shaded where empty), coloured by
residual; (3) RMS of each view in capture order, labelled by its image (camera/file), bad views in red.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from wallwm_edge.calibration.quality import GRID

STATUS_COLOUR = {"good": "#1a7f37", "recapture": "#b35900", "insufficient": "#c62828"}


def _short(source: str) -> str:
    """'capture/cam0/0003.png' -> 'cam0/0003'; 'cam0.mp4#120' -> 'cam0#120'; 'synthetic:cam0/0003' -> 'cam0/0003'."""
    src = source.split(":", 1)[-1] if source.startswith("synthetic:") else source
    p = Path(src.split("#")[0])
    frame = f"#{src.split('#')[1]}" if "#" in src else ""
    return f"{p.parent.name}/{p.stem}" if not frame else f"{p.stem}{frame}"


def plot(cal, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prob, res = cal.problem, cal.result
    n = len(prob.cameras)
    fig, axes = plt.subplots(n, 3, figsize=(15, 4.2 * n), squeeze=False, gridspec_kw=dict(width_ratios=[1, 1.35, 1.6]))
    r = np.linalg.norm(res.residual, axis=1)
    for i, (name, q) in enumerate(zip(prob.cameras, cal.cameras)):
        obs = prob.obs_cam == i
        inl, out = obs & res.inlier, obs & ~res.inlier
        colour = STATUS_COLOUR[q.status]
        # (1) residual scatter
        ax = axes[i, 0]
        lim = max(2.0, float(np.percentile(r[inl], 99.5)) * 1.2) if inl.any() else 2.0
        ax.scatter(res.residual[inl, 0], res.residual[inl, 1], s=2, alpha=0.35, color="#1f77b4", label=f"{inl.sum()} corners")
        if out.any():
            o = np.clip(res.residual[out], -lim, lim)
            ax.scatter(o[:, 0], o[:, 1], s=10, marker="x", color="#c62828", label=f"{out.sum()} outliers (clipped)")
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, ls="--", color="grey"))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("residual x (px)")
        ax.set_ylabel("residual y (px)")
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title(f"{name}: {q.status.upper()}  RMS {q.rms_px:.2f} px", color=colour, fontsize=11, loc="left", fontweight="bold")
        # (2) coverage
        ax = axes[i, 1]
        w, h = cal.sizes[name]
        uv = prob.uv[obs]
        hit = np.zeros(GRID, bool)
        hit[np.clip((uv[:, 1] / h * GRID[0]).astype(int), 0, GRID[0] - 1), np.clip((uv[:, 0] / w * GRID[1]).astype(int), 0, GRID[1] - 1)] = True
        ax.imshow(~hit, extent=(0, w, h, 0), cmap="Reds", vmin=0, vmax=3, alpha=0.6, aspect="auto")
        vmax = max(1.0, float(np.percentile(r[inl], 99))) if inl.any() else 1.0
        sc = ax.scatter(uv[:, 0], uv[:, 1], c=np.minimum(r[obs], vmax), s=2, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        ax.set_title(f"coverage {100 * q.coverage:.0f}% of image (red: no corners)", fontsize=9)
        fig.colorbar(sc, ax=ax, fraction=0.035, label="residual px")
        # (3) per-view RMS
        ax = axes[i, 2]
        vr = np.array([v for _, v in q.view_rms])
        finite = vr[np.isfinite(vr)]
        bad = vr > max(3 * np.median(finite), 1.0) if len(finite) else np.zeros(len(vr), bool)
        ax.bar(np.arange(len(vr)), np.where(np.isfinite(vr), vr, 0), color=np.where(bad, "#c62828", "#1f77b4"))
        ax.axhline(q.rms_px, color="grey", ls="--", lw=1, label=f"camera RMS {q.rms_px:.2f} px")
        # views are labelled by their image (camera folder / file), so a bad one can be found and dropped
        names = [_short(src) for src, _ in q.view_rms]
        step = max(1, int(np.ceil(len(names) / 40)))
        ax.set_xticks(np.arange(0, len(names), step))
        ax.set_xticklabels(names[::step], rotation=90, fontsize=6)
        ax.set_xlabel("view (image, capture order)" + (f"; every {step}th labelled" if step > 1 else ""))
        ax.set_ylabel("RMS (px)")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_title(f"{q.n_views} views; focal +-{q.focal_std_pct:.2f}%, pose +-{q.rot_std_deg:.3f} deg / +-{q.centre_std_mm:.2f} mm (1 sigma)", fontsize=9)
    fig.suptitle(cal.verdict, fontsize=12, color=STATUS_COLOUR["good" if cal.ok else "insufficient"], x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write(cal, out_dir: str | Path, title: str = "wallwm-edge calibration") -> Path:
    """Write OUT/report.png and OUT/report.html; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = plot(cal, out / "report.png")
    frame = "robot base (from the arm's poses)" if cal.absolute else f"camera {cal.reference!r} (no arm pose ties the rig to the base)"
    rows = []
    for q in cal.cameras:
        c = cal.rig.camera(q.name)
        rows.append(
            f"<tr><td>{html.escape(q.name)}</td><td style='color:{STATUS_COLOUR[q.status]}'><b>{q.status}</b></td><td>{q.n_views}</td>"
            f"<td>{q.n_points}</td><td>{q.n_outliers}</td><td>{q.rms_px:.3f}</td><td>{100 * q.coverage:.0f}%</td>"
            f"<td>{100 * q.perspective:.0f}%</td><td>{c.K[0, 0]:.1f} &plusmn; {q.focal_std_pct:.2f}%</td>"
            f"<td>{q.rot_std_deg:.3f}</td><td>{q.centre_std_mm:.2f}</td></tr>"
        )
    advice = "".join(
        f"<li><b>{html.escape(q.name)}</b>: {html.escape(a)}</li>" for q in cal.cameras for a in q.advice
    ) or "<li>nothing to recapture</li>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1250px}} td,th{{padding:3px 10px;text-align:right}} th{{background:#eee}}
td:first-child{{text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2 style="color:{STATUS_COLOUR['good' if cal.ok else 'insufficient']}">{html.escape(cal.verdict)}</h2>
<p>Poses are in the frame of the {html.escape(frame)}. Residual sigma over all inlier corners: {cal.result.sigma:.3f} px per axis.</p>
<h3>What to do</h3><ul>{advice}</ul>
<h3>Cameras</h3>
<table><tr><th>camera</th><th>status</th><th>views</th><th>corners</th><th>outliers</th><th>RMS px</th><th>coverage</th>
<th>perspective</th><th>focal px (1&sigma;)</th><th>rotation &plusmn;deg</th><th>centre &plusmn;mm</th></tr>
{''.join(rows)}</table>
<h3>Residuals, coverage and per-view RMS</h3><img src="{png.name}" style="max-width:100%">
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
