-- flowbot transcript store on Supabase (Postgres + PostgREST + Realtime).
--
-- Mirrors stores/sqlite.py, the reference implementation of
-- stores.base.TranscriptStore. Users read only meetings they own (and those
-- meetings' sessions, segments, windows, speakers and notes); anon reads
-- nothing; only service_role (processor, coordinator) writes.
--
-- Written to re-apply cleanly: every statement is create-if-missing or
-- create-or-replace, so `supabase db push` on a project that already has it,
-- or a second psql run in tests, changes nothing.
--
-- Needs the Supabase roles (anon, authenticated, service_role) and auth.uid();
-- a Supabase project has them, tests/supabase/supabase_bootstrap.sql creates
-- them on plain PostgreSQL.

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS public.meetings (
    id text PRIMARY KEY,
    owner_id uuid NOT NULL,
    topic text NOT NULL DEFAULT '',
    -- The state of the meeting's latest session (stores.base.SessionState).
    status text NOT NULL DEFAULT 'starting'
        CHECK (status IN ('starting', 'live', 'ending', 'processing',
                          'completed', 'partial', 'failed')),
    status_reason text,
    -- Notes of the meeting's latest finished session, for meeting lists;
    -- per-session notes live in meeting_notes.
    notes jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS meetings_owner ON public.meetings (owner_id);

CREATE TABLE IF NOT EXISTS public.sessions (
    id text PRIMARY KEY,
    meeting_id text NOT NULL REFERENCES public.meetings (id) ON DELETE CASCADE,
    state text NOT NULL DEFAULT 'starting'
        CHECK (state IN ('starting', 'live', 'ending', 'processing',
                         'completed', 'partial', 'failed')),
    reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz
);
CREATE INDEX IF NOT EXISTS sessions_meeting ON public.sessions (meeting_id);

CREATE TABLE IF NOT EXISTS public.transcript_segments (
    session_id text NOT NULL REFERENCES public.sessions (id) ON DELETE CASCADE,
    window_index integer NOT NULL CHECK (window_index >= 0),
    segment_index integer NOT NULL CHECK (segment_index >= 0),
    "start" double precision NOT NULL,
    "end" double precision NOT NULL,
    speaker text,
    text text NOT NULL,
    words jsonb NOT NULL DEFAULT '[]'::jsonb,
    is_final boolean NOT NULL DEFAULT true,
    stable boolean NOT NULL DEFAULT true,
    avg_logprob double precision,
    audio_uri text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- The contract's idempotency key: replaying a window upserts the same rows.
    PRIMARY KEY (session_id, window_index, segment_index),
    CHECK ("end" >= "start")
);
-- "Segments of a session in time order" (viewers, notes, exports).
CREATE INDEX IF NOT EXISTS transcript_segments_time
    ON public.transcript_segments (session_id, "start", window_index, segment_index);

CREATE TABLE IF NOT EXISTS public.transcript_windows (
    session_id text NOT NULL REFERENCES public.sessions (id) ON DELETE CASCADE,
    window_index integer NOT NULL CHECK (window_index >= 0),
    start_sample bigint NOT NULL CHECK (start_sample >= 0),
    end_sample bigint NOT NULL,
    -- open = interim text shown while the window is still being recorded.
    status text NOT NULL CHECK (status IN ('open', 'done', 'failed')),
    error text,
    audio_uri text,
    -- Global, increasing on every change: live feeds ask "what changed after R".
    revision bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, window_index),
    CHECK (end_sample >= start_sample)
);
CREATE INDEX IF NOT EXISTS transcript_windows_revision
    ON public.transcript_windows (session_id, revision);

CREATE SEQUENCE IF NOT EXISTS public.flowbot_revision_seq;

CREATE TABLE IF NOT EXISTS public.session_progress (
    session_id text PRIMARY KEY REFERENCES public.sessions (id) ON DELETE CASCADE,
    next_window_index integer NOT NULL CHECK (next_window_index >= 0),
    committed_sample bigint NOT NULL CHECK (committed_sample >= 0),
    ended_sample bigint,
    speaker_state jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.session_speakers (
    session_id text NOT NULL REFERENCES public.sessions (id) ON DELETE CASCADE,
    label text NOT NULL,
    display_name text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, label)
);

CREATE TABLE IF NOT EXISTS public.meeting_notes (
    session_id text PRIMARY KEY REFERENCES public.sessions (id) ON DELETE CASCADE,
    notes jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- Row-level security
-- ---------------------------------------------------------------------------

-- SECURITY DEFINER so the check reads sessions/meetings without recursing
-- into their own policies; it only ever answers for the calling user.
CREATE OR REPLACE FUNCTION public.flowbot_owns_session(p_session_id text)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT EXISTS (
        SELECT 1
        FROM public.sessions s
        JOIN public.meetings m ON m.id = s.meeting_id
        WHERE s.id = p_session_id AND m.owner_id = auth.uid()
    )
$$;

ALTER TABLE public.meetings ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.transcript_segments ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.transcript_windows ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.session_progress ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.session_speakers ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.meeting_notes ENABLE ROW LEVEL SECURITY;

-- Only SELECT policies, only for authenticated: with RLS on and no policy,
-- anon sees nothing and nobody but service_role (BYPASSRLS) writes.
DROP POLICY IF EXISTS meetings_owner_read ON public.meetings;
CREATE POLICY meetings_owner_read ON public.meetings
    FOR SELECT TO authenticated
    USING (owner_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS sessions_owner_read ON public.sessions;
CREATE POLICY sessions_owner_read ON public.sessions
    FOR SELECT TO authenticated
    USING (EXISTS (
        SELECT 1 FROM public.meetings m
        WHERE m.id = meeting_id AND m.owner_id = (SELECT auth.uid())
    ));

DROP POLICY IF EXISTS segments_owner_read ON public.transcript_segments;
CREATE POLICY segments_owner_read ON public.transcript_segments
    FOR SELECT TO authenticated
    USING (public.flowbot_owns_session(session_id));

DROP POLICY IF EXISTS windows_owner_read ON public.transcript_windows;
CREATE POLICY windows_owner_read ON public.transcript_windows
    FOR SELECT TO authenticated
    USING (public.flowbot_owns_session(session_id));

DROP POLICY IF EXISTS speakers_owner_read ON public.session_speakers;
CREATE POLICY speakers_owner_read ON public.session_speakers
    FOR SELECT TO authenticated
    USING (public.flowbot_owns_session(session_id));

DROP POLICY IF EXISTS notes_owner_read ON public.meeting_notes;
CREATE POLICY notes_owner_read ON public.meeting_notes
    FOR SELECT TO authenticated
    USING (public.flowbot_owns_session(session_id));

-- session_progress: no policy at all; the speaker centroids are internal.

-- Supabase grants everything in public to anon/authenticated by default;
-- take writes away so a client write fails loudly (42501) instead of
-- silently matching zero rows under RLS.
REVOKE ALL ON public.meetings, public.sessions, public.transcript_segments,
    public.transcript_windows, public.session_progress, public.session_speakers,
    public.meeting_notes FROM PUBLIC, anon, authenticated;
REVOKE ALL ON SEQUENCE public.flowbot_revision_seq FROM PUBLIC, anon, authenticated;
GRANT SELECT ON public.meetings, public.sessions, public.transcript_segments,
    public.transcript_windows, public.session_speakers, public.meeting_notes
    TO authenticated;
GRANT ALL ON public.meetings, public.sessions, public.transcript_segments,
    public.transcript_windows, public.session_progress, public.session_speakers,
    public.meeting_notes TO service_role;
GRANT USAGE, SELECT ON SEQUENCE public.flowbot_revision_seq TO service_role;

-- ---------------------------------------------------------------------------
-- Write functions (service_role only; each call is one transaction)
-- ---------------------------------------------------------------------------

-- Replace a window's rows with p_segments, upsert the window and the
-- session's progress, all or nothing. Idempotent: a replay rewrites the same
-- rows (with a new revision, so live feeds re-send the window).
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
        revision)
    VALUES (v_session, v_window, (p_window ->> 'start_sample')::bigint,
            (p_window ->> 'end_sample')::bigint, coalesce(p_window ->> 'status', 'done'),
            p_window ->> 'error', p_window ->> 'audio_uri', v_rev)
    ON CONFLICT (session_id, window_index) DO UPDATE SET
        start_sample = excluded.start_sample, end_sample = excluded.end_sample,
        status = excluded.status, error = excluded.error, audio_uri = excluded.audio_uri,
        revision = excluded.revision, updated_at = now();

    PERFORM public.flowbot_save_progress(p_progress);
    RETURN v_rev;
END
$$;

CREATE OR REPLACE FUNCTION public.flowbot_save_progress(p_progress jsonb) RETURNS void
LANGUAGE sql SECURITY INVOKER SET search_path = public AS $$
    INSERT INTO public.session_progress AS p (
        session_id, next_window_index, committed_sample, ended_sample, speaker_state)
    VALUES (p_progress ->> 'session_id', (p_progress ->> 'next_window_index')::integer,
            (p_progress ->> 'committed_sample')::bigint,
            (p_progress ->> 'ended_sample')::bigint,
            coalesce(p_progress -> 'speaker_state', '{}'::jsonb))
    ON CONFLICT (session_id) DO UPDATE SET
        next_window_index = excluded.next_window_index,
        committed_sample = excluded.committed_sample,
        ended_sample = excluded.ended_sample,
        speaker_state = excluded.speaker_state, updated_at = now()
$$;

-- Replace a still-open window's interim rows; false (and nothing written) if
-- the window is already final.
CREATE OR REPLACE FUNCTION public.flowbot_put_interim(
    p_session_id text, p_window_index integer, p_start_sample bigint,
    p_end_sample bigint, p_segments jsonb
) RETURNS boolean
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
DECLARE
    v_rev bigint := nextval('public.flowbot_revision_seq');
BEGIN
    IF EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_segments) e
        WHERE e ->> 'session_id' IS DISTINCT FROM p_session_id
           OR (e ->> 'window_index')::integer IS DISTINCT FROM p_window_index
    ) THEN
        RAISE EXCEPTION 'segment outside window %/%', p_session_id, p_window_index
            USING ERRCODE = '22023';
    END IF;
    -- The conditional upsert both locks the window row and tells whether it
    -- is still open; a final window is never overwritten by interim text.
    INSERT INTO public.transcript_windows AS w (
        session_id, window_index, start_sample, end_sample, status, revision)
    VALUES (p_session_id, p_window_index, p_start_sample, p_end_sample, 'open', v_rev)
    ON CONFLICT (session_id, window_index) DO UPDATE SET
        start_sample = excluded.start_sample, end_sample = excluded.end_sample,
        revision = excluded.revision, updated_at = now()
    WHERE w.status = 'open';
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    DELETE FROM public.transcript_segments s
    WHERE s.session_id = p_session_id AND s.window_index = p_window_index
      AND s.segment_index NOT IN (
          SELECT (e ->> 'segment_index')::integer FROM jsonb_array_elements(p_segments) e
      );
    INSERT INTO public.transcript_segments AS t (
        session_id, window_index, segment_index, "start", "end", speaker, text,
        words, is_final, stable, avg_logprob, audio_uri)
    SELECT r.session_id, r.window_index, r.segment_index, r."start", r."end", r.speaker,
           r.text, coalesce(r.words, '[]'::jsonb), false, coalesce(r.stable, false),
           r.avg_logprob, r.audio_uri
    FROM jsonb_to_recordset(p_segments) AS r(
        session_id text, window_index integer, segment_index integer,
        "start" double precision, "end" double precision, speaker text, text text,
        words jsonb, stable boolean, avg_logprob double precision, audio_uri text)
    ON CONFLICT (session_id, window_index, segment_index) DO UPDATE SET
        "start" = excluded."start", "end" = excluded."end", speaker = excluded.speaker,
        text = excluded.text, words = excluded.words, is_final = false,
        stable = excluded.stable, avg_logprob = excluded.avg_logprob,
        audio_uri = excluded.audio_uri, updated_at = now();
    RETURN true;
END
$$;

-- Register a session (and its meeting) so its rows have an owner.
CREATE OR REPLACE FUNCTION public.flowbot_register_session(
    p_session_id text, p_meeting_id text, p_owner_id uuid, p_topic text, p_state text
) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
BEGIN
    INSERT INTO public.meetings (id, owner_id, topic, status)
    VALUES (p_meeting_id, p_owner_id, coalesce(p_topic, ''), p_state)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, updated_at = now()
    WHERE meetings.owner_id = excluded.owner_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'meeting % belongs to another user', p_meeting_id
            USING ERRCODE = '42501';
    END IF;
    INSERT INTO public.sessions (id, meeting_id, state)
    VALUES (p_session_id, p_meeting_id, p_state)
    ON CONFLICT (id) DO NOTHING;
    IF NOT EXISTS (
        SELECT 1 FROM public.sessions WHERE id = p_session_id AND meeting_id = p_meeting_id
    ) THEN
        RAISE EXCEPTION 'session % belongs to another meeting', p_session_id
            USING ERRCODE = '23505';
    END IF;
END
$$;

-- End-of-workflow status: the meeting's status (and notes), and optionally
-- the session's state and per-session notes, in one transaction.
CREATE OR REPLACE FUNCTION public.flowbot_update_meeting_status(
    p_meeting_id text, p_status text, p_notes jsonb, p_session_id text, p_reason text
) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public AS $$
BEGIN
    UPDATE public.meetings
    SET status = p_status, status_reason = p_reason,
        notes = coalesce(p_notes, notes), updated_at = now()
    WHERE id = p_meeting_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no meeting %', p_meeting_id USING ERRCODE = 'P0002';
    END IF;
    IF p_session_id IS NOT NULL THEN
        UPDATE public.sessions
        SET state = p_status, reason = p_reason, updated_at = now(),
            ended_at = CASE WHEN p_status IN ('completed', 'partial', 'failed')
                            THEN coalesce(ended_at, now()) ELSE ended_at END
        WHERE id = p_session_id AND meeting_id = p_meeting_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no session % in meeting %', p_session_id, p_meeting_id
                USING ERRCODE = 'P0002';
        END IF;
        IF p_notes IS NOT NULL THEN
            INSERT INTO public.meeting_notes (session_id, notes)
            VALUES (p_session_id, p_notes)
            ON CONFLICT (session_id) DO UPDATE SET notes = excluded.notes, updated_at = now();
        END IF;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Read functions (SECURITY INVOKER: row-level security applies to callers)
-- ---------------------------------------------------------------------------

-- Windows changed after p_revision with their segments, oldest first, read in
-- one statement so a window and its segments are from the same snapshot.
CREATE OR REPLACE FUNCTION public.flowbot_changes_since(p_session_id text, p_revision bigint)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'window_index', w.window_index,
        'revision', w.revision,
        'status', w.status,
        'segments', coalesce((
            SELECT jsonb_agg(to_jsonb(s) ORDER BY s.segment_index)
            FROM public.transcript_segments s
            WHERE s.session_id = w.session_id AND s.window_index = w.window_index
        ), '[]'::jsonb)
    ) ORDER BY w.revision), '[]'::jsonb)
    FROM public.transcript_windows w
    WHERE w.session_id = p_session_id AND w.revision > p_revision
$$;

-- Speaker label -> display name (the label itself when unnamed).
CREATE OR REPLACE FUNCTION public.flowbot_speakers(p_session_id text)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public AS $$
    SELECT coalesce(jsonb_object_agg(l.label, coalesce(n.display_name, l.label)), '{}'::jsonb)
    FROM (
        SELECT DISTINCT speaker AS label FROM public.transcript_segments
        WHERE session_id = p_session_id AND speaker IS NOT NULL
        UNION
        SELECT label FROM public.session_speakers WHERE session_id = p_session_id
    ) l
    LEFT JOIN public.session_speakers n
        ON n.session_id = p_session_id AND n.label = l.label
$$;

REVOKE ALL ON FUNCTION
    public.flowbot_commit_window(jsonb, jsonb, jsonb),
    public.flowbot_save_progress(jsonb),
    public.flowbot_put_interim(text, integer, bigint, bigint, jsonb),
    public.flowbot_register_session(text, text, uuid, text, text),
    public.flowbot_update_meeting_status(text, text, jsonb, text, text),
    public.flowbot_changes_since(text, bigint),
    public.flowbot_speakers(text),
    public.flowbot_owns_session(text)
FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
    public.flowbot_commit_window(jsonb, jsonb, jsonb),
    public.flowbot_save_progress(jsonb),
    public.flowbot_put_interim(text, integer, bigint, bigint, jsonb),
    public.flowbot_register_session(text, text, uuid, text, text),
    public.flowbot_update_meeting_status(text, text, jsonb, text, text),
    public.flowbot_changes_since(text, bigint),
    public.flowbot_speakers(text),
    public.flowbot_owns_session(text)
TO service_role;
-- Viewers catch up through the read functions; RLS filters what they return.
GRANT EXECUTE ON FUNCTION
    public.flowbot_changes_since(text, bigint),
    public.flowbot_speakers(text),
    public.flowbot_owns_session(text)
TO authenticated;

-- ---------------------------------------------------------------------------
-- Realtime: tables clients watch. Supabase Realtime applies each subscriber's
-- RLS to postgres_changes on these tables.
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        CREATE PUBLICATION supabase_realtime;
    END IF;
    FOREACH t IN ARRAY ARRAY['meetings', 'sessions', 'transcript_segments',
                             'transcript_windows', 'session_speakers', 'meeting_notes']
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_publication_tables
            WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = t
        ) THEN
            EXECUTE format('ALTER PUBLICATION supabase_realtime ADD TABLE public.%I', t);
        END IF;
    END LOOP;
END
$$;
