"""Every report the flows publish, rendered from their records: the markdown and table
artifacts of each run, and the payloads of the drift events. Pure: records in, text, rows and
event arguments out; the flows create the artifacts and emit the events. One module per run
kind (training, inference and the hourly job, monitoring, ingestion); `markdown` holds the
pieces they share, among them how untrusted text (bucket keys, error messages) goes into
markdown.

How the Prefect UI shows them (prefect-ui-library, as bundled with the pinned Prefect): a
markdown artifact's link shows its text as written, markup included, so link texts are plain
(no backticks); a table artifact's string cell is rendered as a markdown *document*, so a
lone "-" there is an empty bullet list, while None shows as an empty cell. So a missing
figure is None in table rows, and NOT_APPLICABLE (not "-") in the markdown tables too, whose
cells the UI renders inline but other viewers may not."""
