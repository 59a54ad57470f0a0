"""`parnn plan --verify` runs a hybrid candidate through the hybrid engine
(`parnn pipeline --replicas`) with the partition and micro-batches its prediction chose."""

from __future__ import annotations

import pytest

from parnn.plan import Candidate, Prediction
from parnn.plan.verify import VerifySettings, measure_candidate


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:oversubscribed")  # 4 ranks on a 2-core machine is allowed
def test_a_hybrid_candidate_is_measured_by_the_hybrid_engine() -> None:
    candidate = Candidate(
        axis="hybrid", threads=1, replicas=2, stages=2, engine="ddp", schedule="1f1b"
    )
    assert candidate.runnable
    prediction = Prediction(
        samples_per_s=1.0, step_s=1.0, compute_s=1.0, num_microbatches=2, partition=(0, 3, 5)
    )
    settings = VerifySettings(
        model="lenet5", input_shape=(1, 28, 28), batch_size=8, steps=3, warmup_steps=1
    )
    measured = measure_candidate(candidate, prediction, settings)
    assert measured is not None and measured > 0


def test_a_candidate_on_several_nodes_stays_unmeasured() -> None:
    candidate = Candidate(
        axis="hybrid", threads=1, replicas=4, stages=2, engine="ddp", schedule="gpipe", nodes=2
    )
    prediction = Prediction(
        samples_per_s=1.0, step_s=1.0, compute_s=1.0, num_microbatches=2, partition=(0, 3, 5)
    )
    settings = VerifySettings(model="lenet5", input_shape=(1, 28, 28), batch_size=8)
    assert measure_candidate(candidate, prediction, settings) is None
