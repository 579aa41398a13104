"""The API's routes, one router a concern: images (/generate, /balance), operations (models,
health, metrics, the gallery) and admin (/admin/reload, bearer token)."""
