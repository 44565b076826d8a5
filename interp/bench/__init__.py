"""An auditing benchmark with planted ground truth: organisms whose change is known (:mod:`interp.bench.plants`,
each with a :class:`~interp.bench.cards.Card`), methods that turn a pair into ranked hypotheses in one format
(:mod:`interp.bench.methods`), and deterministic graders (:mod:`interp.bench.grade`)."""
