"""CoinGecko: the daily point-in-time ranking of the top coins by market cap."""
