-- Issue 21: one consistent cast at the end of a meeting.
-- 1. Windows keep each session speaker's speech and voice embedding (``speakers``:
--    [{label, seconds, embedding}]), written by the processor with the window, so the
--    end-of-session reconciliation can cluster all window speakers at once.
-- 2. flowbot_relabel_speakers applies the reconciliation in one transaction, once per
--    session, and keeps what it changed (session_speaker_relabels; get_session reports it).
-- Idempotent: safe to apply again. flowbot_commit_window is 20261201000000 plus
-- p_window -> 'speakers'.

ALTER TABLE public.transcript_windows
    ADD COLUMN IF NOT EXISTS speakers jsonb NOT NULL DEFAULT '[]'::jsonb
    CHECK (jsonb_typeof(speakers) = 'array');

CREATE TABLE IF NOT EXISTS public.session_speaker_relabels (
    session_id text PRIMARY KEY REFERENCES public.sessions (id) ON DELETE CASCADE,
    record jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.session_speaker_relabels ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS relabels_owner_read ON public.session_speaker_relabels;
CREATE POLICY relabels_owner_read ON public.session_speaker_relabels
    FOR SELECT TO authenticated
    USING (public.flowbot_owns_session(session_id));
REVOKE ALL ON public.session_speaker_relabels FROM PUBLIC, anon, authenticated;
GRANT SELECT ON public.session_speaker_relabels TO authenticated;
GRANT ALL ON public.session_speaker_relabels TO service_role;

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
    IF jsonb_typeof(coalesce(p_window -> 'speakers', '[]'::jsonb)) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'window speakers must be a JSON array' USING ERRCODE = '22023';
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
        turns, revision, dropped_segments, speakers)
    VALUES (v_session, v_window, (p_window ->> 'start_sample')::bigint,
            (p_window ->> 'end_sample')::bigint, coalesce(p_window ->> 'status', 'done'),
            p_window ->> 'error', p_window ->> 'audio_uri',
            coalesce(p_window -> 'turns', '[]'::jsonb), v_rev,
            coalesce((p_window ->> 'dropped_segments')::integer, 0),
            coalesce(p_window -> 'speakers', '[]'::jsonb))
    ON CONFLICT (session_id, window_index) DO UPDATE SET
        start_sample = excluded.start_sample, end_sample = excluded.end_sample,
        status = excluded.status, error = excluded.error, audio_uri = excluded.audio_uri,
        turns = excluded.turns, revision = excluded.revision,
        dropped_segments = excluded.dropped_segments, speakers = excluded.speakers,
        updated_at = now();

    PERFORM public.flowbot_save_progress(p_progress);
    RETURN v_rev;
END
$$;

-- The relabelled rows are computed by the client (stores/supabase.py, with the same
-- contracts functions as SQLite); this function writes them all or nothing. Every
-- changed window gets a new revision, so Realtime and catch-up readers send it again.
CREATE OR REPLACE FUNCTION public.flowbot_relabel_speakers(
    p_session_id text, p_segments jsonb, p_windows jsonb, p_names jsonb, p_record jsonb
) RETURNS boolean
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
BEGIN
    -- One relabel per session; the row lock makes a concurrent second call wait, then lose.
    INSERT INTO public.session_speaker_relabels (session_id, record)
    VALUES (p_session_id, p_record)
    ON CONFLICT (session_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE public.transcript_segments t
    SET speaker = r.speaker, words = coalesce(r.words, '[]'::jsonb), updated_at = now()
    FROM jsonb_to_recordset(p_segments) AS r(
        window_index integer, segment_index integer, speaker text, words jsonb)
    WHERE t.session_id = p_session_id AND t.window_index = r.window_index
      AND t.segment_index = r.segment_index AND t.is_final;

    UPDATE public.transcript_windows w
    SET turns = r.turns, speakers = r.speakers,
        revision = nextval('public.flowbot_revision_seq'), updated_at = now()
    FROM jsonb_to_recordset(p_windows) AS r(window_index integer, turns jsonb, speakers jsonb)
    WHERE w.session_id = p_session_id AND w.window_index = r.window_index AND w.status <> 'open';

    DELETE FROM public.session_speakers WHERE session_id = p_session_id;
    INSERT INTO public.session_speakers (session_id, label, display_name)
    SELECT p_session_id, e.key, e.value
    FROM jsonb_each_text(coalesce(p_names, '{}'::jsonb)) e;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION public.flowbot_relabel_speakers(text, jsonb, jsonb, jsonb, jsonb)
FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.flowbot_relabel_speakers(text, jsonb, jsonb, jsonb, jsonb)
TO service_role;
