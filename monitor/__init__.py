"""driftmon: drift monitoring for deployed cameras (the daemon)."""

__version__ = "0.1.0"
