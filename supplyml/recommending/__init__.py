"""Product recommendations from the order history: interactions and their temporal split, the model
protocol (`Recommender`), ranking metrics, peers, the Lightning models and a bench."""

from supplyml.recommending.base import FALLBACK, RECOMMENDERS, Recommendations, Recommender, load, recommender
from supplyml.recommending.peers import PEERS

__all__ = ["FALLBACK", "PEERS", "RECOMMENDERS", "Recommendations", "Recommender", "load", "recommender"]
