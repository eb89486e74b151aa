-- Each job's event log, read by `GET /v1/jobs/{id}/events` (Server-Sent Events) on any API
-- replica. Ids are the stream's event ids: a client that reconnects with `Last-Event-ID: N`
-- gets the job's events with an id above N. Events of one job are written by updates of its
-- row, which Postgres serializes, so their ids follow their order.
--
-- State changes and progress are recorded by a trigger on `jobs`, so no code path that moves a
-- job can forget one; previews are inserted by the worker that holds the job's lease
-- (`Store::record_preview`). Each insert is announced on the channel `darkroom_job_events`
-- (payload: the job id) when its transaction commits. When a job ends, all but its newest
-- preview are deleted; the rest goes with the job (retention).
CREATE TABLE job_events (
    id          BIGSERIAL PRIMARY KEY,
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('queued', 'started', 'progress', 'preview', 'succeeded', 'failed', 'canceled')),
    data        JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE FUNCTION record_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event_kind TEXT;
    event_data JSONB := '{}';
BEGIN
    IF TG_OP = 'INSERT' THEN
        event_kind := 'queued';
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        event_kind := CASE NEW.status WHEN 'running' THEN 'started' ELSE NEW.status::text END;
        -- A job that succeeds before its last step's progress was written: that step first.
        IF NEW.status = 'succeeded' AND OLD.status = 'running' AND NEW.progress_step > OLD.progress_step THEN
            INSERT INTO job_events (job_id, kind, data) VALUES (NEW.id, 'progress',
                jsonb_build_object('step', NEW.progress_step, 'total', NEW.progress_total, 'eta', 0));
        END IF;
        IF NEW.status = 'running' THEN
            event_data := jsonb_build_object('attempt', NEW.attempts);
        END IF;
    ELSIF NEW.status = 'running'
          AND (NEW.progress_step, NEW.progress_total) IS DISTINCT FROM (OLD.progress_step, OLD.progress_total) THEN
        event_kind := 'progress';
        -- The ETA extrapolates the job's pace so far (since it started) over the steps left.
        event_data := jsonb_build_object(
            'step', NEW.progress_step,
            'total', NEW.progress_total,
            'eta', CASE WHEN NEW.progress_step > 0 AND NEW.started_at IS NOT NULL
                        THEN round((extract(epoch FROM (clock_timestamp() - NEW.started_at))
                                    / NEW.progress_step * greatest(NEW.progress_total - NEW.progress_step, 0))::numeric, 3)
                   END);
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO job_events (job_id, kind, data) VALUES (NEW.id, event_kind, event_data);
    IF event_kind IN ('succeeded', 'failed', 'canceled') THEN
        DELETE FROM job_events
        WHERE job_id = NEW.id AND kind = 'preview'
          AND id < (SELECT max(id) FROM job_events WHERE job_id = NEW.id AND kind = 'preview');
    END IF;
    PERFORM pg_notify('darkroom_job_events', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_record_event
    AFTER INSERT OR UPDATE OF status, progress_step, progress_total ON jobs
    FOR EACH ROW EXECUTE FUNCTION record_job_event();
