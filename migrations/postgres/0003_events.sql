-- billpay-gateway store schema, version 3: payment events (the outbox). Never edit a shipped
-- migration, add the next one instead.

-- One row per recorded change of a payment, inserted in the same transaction as the change to
-- its billpay_kv row: a change is never committed without its event, nor an event without its
-- change. `event` is a billpay.v1.PaymentEvent in protobuf binary encoding with event_id
-- empty: the event_id is `position`, in decimal. at_ms: when it happened (unix ms), what
-- retention (events.retention_ms) counts from.
CREATE TABLE billpay_events (
    position   bigint PRIMARY KEY,
    payment_id text COLLATE "C" NOT NULL,
    caller     text NOT NULL,
    event      bytea NOT NULL,
    at_ms      bigint NOT NULL
);

-- The retention trim finds the newest event older than its cut-off.
CREATE INDEX billpay_events_at_ms ON billpay_events (at_ms);

-- The position counter (one row). Serial or identity ids commit out of order, so a reader
-- reading "after position N" could pass a row that commits later with a smaller position.
-- Here every event-writing transaction takes its position by updating this row, whose lock it
-- holds until it commits: position N+1 cannot even be assigned before N committed (or rolled
-- back, taking its increment with it). Positions are therefore gapless and commit in order,
-- and "position > N" never skips a row. The cost: event-writing transactions commit one at a
-- time (each holds the lock for its last two statements and its commit).
CREATE TABLE billpay_event_position (
    id              smallint PRIMARY KEY CHECK (id = 1),
    -- The last position handed out (0: none yet).
    last_position   bigint NOT NULL,
    -- Every event at or below this position was deleted by retention: a reader resuming
    -- below it has a gap and is told so.
    trimmed_through bigint NOT NULL
);
INSERT INTO billpay_event_position (id, last_position, trimmed_through) VALUES (1, 0, 0);
