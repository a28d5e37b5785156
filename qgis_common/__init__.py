"""QGIS-side code that the Processing algorithms and the docks share: styles, the log, the file
behind a layer, user-facing error messages, and the adapters that turn a user's choices into
engine requests. It imports neither ``processing_provider`` nor ``ui``; both import it."""
