"""The dashboard served by the web process at `/`: server-rendered pages over the service layer, a little JavaScript."""
