"""Training retrievers worth explaining: cross-encoder rerankers and DPR-style bi-encoders."""

from irlens.training.bi_encoder import bm25_hard_negatives, retrieval_evaluation, train_bi_encoder
from irlens.training.cross_encoder import (
    Group,
    TrainingResult,
    judged_ids,
    labelled_pairs,
    pool_negatives,
    rerank_evaluation,
    teacher_scores,
    train_cross_encoder,
    training_groups,
)

__all__ = ["Group", "TrainingResult", "bm25_hard_negatives", "judged_ids", "labelled_pairs",
           "pool_negatives", "rerank_evaluation", "retrieval_evaluation", "teacher_scores",
           "train_bi_encoder", "train_cross_encoder", "training_groups"]
