"""Model sources: the embedded tiny pipeline and user-given folders or hub ids."""
