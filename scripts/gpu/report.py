"""The Markdown page of a GPU check (``gpu-check.md``), from its results (``gpu-check.json``).

Standard library only: it is written after every phase, also when a later phase hangs or the
machine is taken back, so the page always shows what was measured so far.
"""

from __future__ import annotations

from typing import Any


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _summary(name: str, phase: dict[str, Any]) -> str:
    """One cell: what the phase found, in a line."""
    if phase.get("status") != "ok" and "error" in phase:
        return phase["error"]
    if name == "install":
        return ", ".join(f"{k} {v}" for k, v in phase.get("installed", {}).items())
    if name == "env" and "device_name" in phase:
        return (f"{phase['device_name']}, torch {phase.get('torch')} (CUDA {phase.get('cuda')}), transformers "
                f"{phase.get('transformers')}; {phase['matmul_dtype']} matmul peak "
                f"{phase['matmul_peak_gflops'] / 1000:,.1f} TFLOP/s")
    if name == "smoke" and "tasks" in phase:
        resume = phase.get("resume", {})
        return (f"{phase['steps']} steps, {len(phase['tasks'])} tasks; finite: "
                f"{all(t['finite'] for t in phase['tasks'].values())}, falling: "
                f"{sum(t['falling'] for t in phase['tasks'].values())}/{len(phase['tasks'])}; resume within "
                f"{resume.get('tolerance', float('nan')):.2g}: {resume.get('within')}")
    if name == "bench" and phase.get("rows"):
        return "; ".join(f"{r['measure'].split(' ', 1)[0]} {r['ratio']:.2f}x" for r in phase["rows"])
    if name == "value" and "plan" in phase:
        return (f"{phase['plan']['steps_per_task']} steps per task, {phase.get('seeds_reported', 0)} of "
                f"{phase['plan']['seeds']} seeds reported")
    return ""


def bench_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| measure | ours | baseline | ratio | target | met? |", "|---|---:|---:|---:|---:|:---:|"]
    for row in rows:
        target = "-" if row["target"] is None else f"{'≥' if row['higher_is_better'] else '≤'} {row['target']:g}x"
        met = {None: "-", True: "yes", False: "**no**"}[row["met"]]
        lines.append(f"| {row['measure']} | {_number(row['ours'])} {row['unit']} | {_number(row['baseline'])} "
                     f"{row['unit']} | {row['ratio']:.2f}x | {target} | {met} |")
    return lines + [""] + [f"- {row['measure'].split(' ', 1)[0]} {row['note']}" for row in rows if row["note"]]


def _smoke(phase: dict[str, Any]) -> list[str]:
    """The smoke test's section: as much of it as was measured before the phase ended."""
    lines = ["## Smoke test", "", f"`{phase['command']}`", "", "| task | loss, first fifth | last fifth | "
             "finite | falling |", "|---|---:|---:|:---:|:---:|"]
    lines += [f"| {task} | {t['first']:.4f} | {t['last']:.4f} | {t['finite']} | {t['falling']} |"
              for task, t in phase["tasks"].items()]
    memory = phase["max_memory_allocated_mib"]
    memory_text = f", peak GPU memory {memory:,.0f} MiB" if memory else ""
    lines += ["", f"Median {phase['tokens_per_s']:,.0f} tokens/s{memory_text}, {phase['skipped_steps']} non-finite "
              "steps."]
    if "fill_mask" in phase:
        fill = phase["fill_mask"]
        lines += ["", f"Fill-mask on {fill['model_device']}: " + ", ".join(f"{t} {s:.3f}" for t, s in fill["top5"])]
    if "resume" in phase:
        resume = phase["resume"]
        lines += ["", f"Kill and resume: killed after step {resume['killed_after_step']}, resumed from the checkpoint "
                  f"of step {resume['resumed_from_step']}. Largest loss difference against the uninterrupted run "
                  f"over the 10 steps after the checkpoint {resume['max_diff_after']:.3g} nats, over the 10 before it "
                  f"(two independent runs: the kernels' spread) {resume['max_diff_before']:.3g}; the tolerance is "
                  f"twice that plus 0.001, {resume['tolerance']:.3g}: "
                  f"{'within' if resume['within'] else '**exceeded**'}; bit-exact: {resume['bit_exact']}."]
    return lines


def _value(phase: dict[str, Any]) -> list[str]:
    plan = phase["plan"]
    cal = phase.get("calibration", {})
    lines = ["## Value experiment", "", f"`{phase['command']}`", "",
             f"Measured here first: a step {cal.get('step', 0) * 1000:.1f} ms, a run's overhead "
             f"{cal.get('run_overhead', 0):.1f} s, a fine-tuning epoch {cal.get('finetune_epoch', 0):.1f} s; so "
             f"{plan['steps_per_task']} steps per task at batch {plan['batch_size']} x {plan['seq_length']}. "
             "Expected seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in plan["estimate"].items()) + ".", ""]
    if phase.get("fill_mask_pipeline"):
        fill = phase["fill_mask_pipeline"]
        lines += [f"transformers' fill-mask pipeline on {fill['model_device']} (a MiniLM export): "
                  + ", ".join(f"{t} {s:.3f}" for t, s in fill["top5"]), ""]
    lines += [f"{phase.get('seeds_reported', 0)} of {plan['seeds']} seeds reported"
              + (" (compare ran out of time; the report covers the seeds that finished)"
                 if phase.get("seeds_reported", 0) < plan["seeds"] else "") + ". Compare's answer:", "",
              phase.get("answer") or "(no report)", "", "The whole report: `value-report.md`."]
    return lines


def page(results: dict[str, Any]) -> str:
    """The whole page."""
    phases = results["phases"]
    env = phases.get("env", {})
    lines = [f"# ernie-cpt GPU check: {env.get('device_name', results['device'])}, {results['date']}", "",
             f"`{results['command']}`{' (the CPU dry run, toy sizes)' if results['quick'] else ''}: "
             f"{results.get('seconds', 0):.0f} s of a {results['budget_seconds']:.0f} s budget.", "",
             "| phase | status | seconds | result |", "|---|---|---:|---|"]
    lines += [f"| {name} | {p.get('status')} | {p.get('seconds', 0):.0f} | {_summary(name, p)} |"
              for name, p in phases.items()]
    if "tasks" in phases.get("smoke", {}):
        lines += ["", *_smoke(phases["smoke"])]
    if phases.get("bench", {}).get("rows"):
        lines += ["", "## Benchmarks (`python -m benchmarks.run`)", "", *bench_table(phases["bench"]["rows"])]
    if "plan" in phases.get("value", {}):
        lines += ["", *_value(phases["value"])]
    if env.get("nvidia_smi"):
        lines += ["", "## nvidia-smi", "", "```", env["nvidia_smi"], "```"]
    return "\n".join(lines) + "\n"
