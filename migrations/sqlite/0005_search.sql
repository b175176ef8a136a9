-- Full-text search (`POST /search`) over message bodies, room names and topics.
-- rowid: the event's stream_ordering. key: `content.body`, `content.name` or `content.topic`.
-- value: the text as the server lowercased it, so that matching ignores case alike on both
-- backends. The trigram tokenizer indexes every 3-character run, so text in any script (Chinese
-- included, which has no spaces between words) is found by substring; shorter terms are matched
-- by scanning the same table. `detail = none` keeps no positions: the index is a fraction of the
-- size and cheap to write with every message; queries look up single trigrams and check the
-- candidates by substring.
CREATE VIRTUAL TABLE event_search USING fts5(value, key UNINDEXED, tokenize = 'trigram', detail = none);
