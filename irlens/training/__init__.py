"""Training retrievers worth explaining: cross-encoder rerankers and DPR-style bi-encoders."""

from irlens.training.bi_encoder import bm25_hard_negatives, retrieval_evaluation, train_bi_encoder
from irlens.training.cross_encoder import (
    Group,
    TrainingResult,
    labelled_pairs,
    rerank_evaluation,
    teacher_scores,
    train_cross_encoder,
    training_groups,
)
from irlens.training.mining import mine_negatives

__all__ = ["Group", "TrainingResult", "bm25_hard_negatives", "labelled_pairs",
           "mine_negatives", "rerank_evaluation", "retrieval_evaluation", "teacher_scores",
           "train_bi_encoder", "train_cross_encoder", "training_groups"]
