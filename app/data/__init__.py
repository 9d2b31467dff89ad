"""The data layer: the tables and every query on them. It knows nothing of HTTP, pages or Kafka."""
