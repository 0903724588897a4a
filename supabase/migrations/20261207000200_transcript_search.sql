-- Full-text search over final transcript segments, under the same row-level security.
--
-- A GIN expression index (no stored column: rows, their reads and Realtime payloads stay as they
-- were; only matching rows recompute their vector for ranking); `flowbot_search` is SECURITY INVOKER, so an
-- authenticated caller's search sees only rows the transcript_segments policies let them read
-- (their own meetings), exactly like a plain SELECT. The service role (coordinator) passes the
-- session ids its caller may read. Mirrors SqliteTranscriptStore.search: every word must occur,
-- English stemming, best rank first. Re-applies cleanly.

CREATE INDEX IF NOT EXISTS transcript_segments_search
    ON public.transcript_segments USING gin (to_tsvector('english', text)) WHERE is_final;

-- p_words: the query's words as stores.base.search_words splits them (plainto_tsquery treats
-- them as words, never as tsquery syntax). StartSel/StopSel are stores.base.MATCH_START/END.
CREATE OR REPLACE FUNCTION public.flowbot_search(
    p_words text,
    p_session_ids text[] DEFAULT NULL,
    p_limit integer DEFAULT 20
)
RETURNS TABLE (
    session_id text,
    window_index integer,
    segment_index integer,
    "start" double precision,
    "end" double precision,
    speaker text,
    text text,
    snippet text,
    score real
)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public AS $$
    SELECT s.session_id, s.window_index, s.segment_index, s."start", s."end", s.speaker, s.text,
           ts_headline('english', s.text, q,
                       'HighlightAll=true, StartSel=' || chr(2) || ', StopSel=' || chr(3)),
           ts_rank_cd(to_tsvector('english', s.text), q)
    FROM public.transcript_segments s, plainto_tsquery('english', p_words) q
    WHERE s.is_final
      AND to_tsvector('english', s.text) @@ q
      AND (p_session_ids IS NULL OR s.session_id = ANY (p_session_ids))
    ORDER BY ts_rank_cd(to_tsvector('english', s.text), q) DESC, s.session_id, s."start"
    LIMIT least(greatest(p_limit, 1), 200)
$$;

REVOKE ALL ON FUNCTION public.flowbot_search(text, text[], integer) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.flowbot_search(text, text[], integer) TO authenticated, service_role;
