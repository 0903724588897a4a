-- flowbot: windows keep the diarizer's speaker turns.
--
-- A committed window now carries who spoke when in its span, as the diarizer
-- found it (session speaker labels, seconds on the session timeline,
-- overlapping speech kept): [{"start": 12.3, "end": 15.0, "speaker": "S1"}, ...].
-- RTTM export reads them; turns made from words miss the pauses between words
-- and overlapping speech. Windows committed before this migration keep '[]'.

ALTER TABLE public.transcript_windows
    ADD COLUMN IF NOT EXISTS turns jsonb NOT NULL DEFAULT '[]'::jsonb
        CHECK (jsonb_typeof(turns) = 'array');

-- Same as 20260601000000 plus p_window -> 'turns' (CREATE OR REPLACE keeps the grants).
CREATE OR REPLACE FUNCTION public.flowbot_commit_window(
    p_window jsonb, p_segments jsonb, p_progress jsonb
) RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
DECLARE
    v_session text := p_window ->> 'session_id';
    v_window integer := (p_window ->> 'window_index')::integer;
    v_rev bigint := nextval('public.flowbot_revision_seq');
BEGIN
    IF v_session IS NULL OR v_window IS NULL THEN
        RAISE EXCEPTION 'window needs session_id and window_index'
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(p_segments) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'segments must be a JSON array' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_segments) e
        WHERE e ->> 'session_id' IS DISTINCT FROM v_session
           OR (e ->> 'window_index')::integer IS DISTINCT FROM v_window
    ) THEN
        RAISE EXCEPTION 'segment outside window %/%', v_session, v_window
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(coalesce(p_window -> 'turns', '[]'::jsonb)) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'window turns must be a JSON array' USING ERRCODE = '22023';
    END IF;
    IF (p_progress ->> 'session_id') IS DISTINCT FROM v_session THEN
        RAISE EXCEPTION 'progress is for another session' USING ERRCODE = '22023';
    END IF;

    -- Stale rows of this window (e.g. interim segments beyond the final count).
    DELETE FROM public.transcript_segments s
    WHERE s.session_id = v_session AND s.window_index = v_window
      AND s.segment_index NOT IN (
          SELECT (e ->> 'segment_index')::integer FROM jsonb_array_elements(p_segments) e
      );

    INSERT INTO public.transcript_segments AS t (
        session_id, window_index, segment_index, "start", "end", speaker, text,
        words, is_final, stable, avg_logprob, audio_uri)
    SELECT r.session_id, r.window_index, r.segment_index, r."start", r."end", r.speaker,
           r.text, coalesce(r.words, '[]'::jsonb), coalesce(r.is_final, true),
           coalesce(r.stable, true), r.avg_logprob, r.audio_uri
    FROM jsonb_to_recordset(p_segments) AS r(
        session_id text, window_index integer, segment_index integer,
        "start" double precision, "end" double precision, speaker text, text text,
        words jsonb, is_final boolean, stable boolean, avg_logprob double precision,
        audio_uri text)
    ON CONFLICT (session_id, window_index, segment_index) DO UPDATE SET
        "start" = excluded."start", "end" = excluded."end", speaker = excluded.speaker,
        text = excluded.text, words = excluded.words, is_final = excluded.is_final,
        stable = excluded.stable, avg_logprob = excluded.avg_logprob,
        audio_uri = excluded.audio_uri, updated_at = now();

    INSERT INTO public.transcript_windows AS w (
        session_id, window_index, start_sample, end_sample, status, error, audio_uri,
        turns, revision)
    VALUES (v_session, v_window, (p_window ->> 'start_sample')::bigint,
            (p_window ->> 'end_sample')::bigint, coalesce(p_window ->> 'status', 'done'),
            p_window ->> 'error', p_window ->> 'audio_uri',
            coalesce(p_window -> 'turns', '[]'::jsonb), v_rev)
    ON CONFLICT (session_id, window_index) DO UPDATE SET
        start_sample = excluded.start_sample, end_sample = excluded.end_sample,
        status = excluded.status, error = excluded.error, audio_uri = excluded.audio_uri,
        turns = excluded.turns, revision = excluded.revision, updated_at = now();

    PERFORM public.flowbot_save_progress(p_progress);
    RETURN v_rev;
END
$$;
