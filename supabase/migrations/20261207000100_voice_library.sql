-- Voice library: remembered voices (speaker embeddings, never audio) and the
-- session speakers named after them. Mirrors stores/sqlite_voices.py; the
-- rules are in docs/voices.md.
--
-- A voice embedding is personal data: only its owner reads or deletes it
-- (row-level security on owner_id = auth.uid()); anon reads nothing; only
-- service_role (the coordinator, the end-of-session workflow) writes. Voices
-- are not in the Realtime publication: an embedding is never broadcast.
-- Namings (which speaker of which session a voice named, with its score) are
-- read like the rest of a session: by the session's owner.
--
-- Re-applies cleanly (create-if-missing, drop-and-create policies).

CREATE TABLE IF NOT EXISTS public.voices (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- The embedding model (FLOWBOT_DIARIZATION weights): voices of one model
    -- are only ever compared with speakers embedded by the same model.
    model text NOT NULL,
    embedding real[] NOT NULL CHECK (cardinality(embedding) BETWEEN 1 AND 4096),
    seconds double precision NOT NULL CHECK (seconds >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS voices_owner ON public.voices (owner_id, model);

CREATE TABLE IF NOT EXISTS public.voice_namings (
    session_id text NOT NULL REFERENCES public.sessions (id) ON DELETE CASCADE,
    label text NOT NULL,
    -- NULL once the voice was forgotten: the name stays, the link goes.
    voice_id uuid REFERENCES public.voices (id) ON DELETE SET NULL,
    name text NOT NULL,
    score double precision NOT NULL,
    state text NOT NULL CHECK (state IN ('named', 'undone')),
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, label)
);
CREATE INDEX IF NOT EXISTS voice_namings_voice ON public.voice_namings (voice_id);

ALTER TABLE public.voices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.voice_namings ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS voices_owner_read ON public.voices;
CREATE POLICY voices_owner_read ON public.voices
    FOR SELECT TO authenticated
    USING (owner_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS voices_owner_delete ON public.voices;
CREATE POLICY voices_owner_delete ON public.voices
    FOR DELETE TO authenticated
    USING (owner_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS voice_namings_owner_read ON public.voice_namings;
CREATE POLICY voice_namings_owner_read ON public.voice_namings
    FOR SELECT TO authenticated
    USING (public.flowbot_owns_session(session_id));

REVOKE ALL ON public.voices, public.voice_namings FROM PUBLIC, anon, authenticated;
GRANT SELECT, DELETE ON public.voices TO authenticated;
GRANT SELECT ON public.voice_namings TO authenticated;
GRANT ALL ON public.voices, public.voice_namings TO service_role;

-- Viewers see a speaker named by voice (and an undo) as it happens.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_publication_tables
        WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = 'voice_namings'
    ) THEN
        ALTER PUBLICATION supabase_realtime ADD TABLE public.voice_namings;
    END IF;
END
$$;
