-- billpay-gateway store schema, version 1: the Store trait's key-value records and sorted sets.
-- Applied by `billpay-gateway store init` / `store migrate` in one transaction; never edit a
-- shipped migration, add the next one instead.

-- Every value the gateway keeps: payment records (billpay:v1:payment:<id>), follow-up records
-- (billpay:v1:op:<id>), the store identity, reference counters (decimal text), tokens and
-- catalogs when they live here. A row whose expires_at has passed is invisible to every
-- statement and is overwritten by the next write of its key or deleted by the sweep.
CREATE TABLE billpay_kv (
    key        text COLLATE "C" PRIMARY KEY,
    value      bytea       NOT NULL,
    expires_at timestamptz,
    -- Bumped by every write: a compare-and-swap phase moves it by one.
    version    bigint      NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The sweep of expired rows.
CREATE INDEX billpay_kv_expires_at ON billpay_kv (expires_at) WHERE expires_at IS NOT NULL;

-- Sorted sets: the reconciliation schedule (billpay:v1:reconcile, member = payment id, score =
-- next check in unix ms) and the journal index (billpay:v1:journal, score = creation time).
CREATE TABLE billpay_schedule (
    set_name text COLLATE "C" NOT NULL,
    member   text COLLATE "C" NOT NULL,
    due_ms   bigint NOT NULL,
    PRIMARY KEY (set_name, member)
);

-- What is due (reconciler) and a time range of the journal, in (due, member) order.
CREATE INDEX billpay_schedule_due ON billpay_schedule (set_name, due_ms, member);

-- The payment journal for people and SQL: one row per live payment record, its JSON
-- decoded. The gateway itself reads billpay_kv.
CREATE VIEW billpay_payments AS
SELECT substr(key, length('billpay:v1:payment:') + 1) AS payment_id,
       record ->> 'request_id'                      AS request_id,
       record ->> 'state'                           AS state,
       record ->> 'caller'                          AS caller,
       record -> 'order' ->> 'provider'             AS provider,
       record ->> 'provider_reference'              AS provider_reference,
       record ->> 'provider_transaction_id'         AS provider_transaction_id,
       (record ->> 'created_at_ms')::bigint         AS created_at_ms,
       (record ->> 'updated_at_ms')::bigint         AS updated_at_ms,
       record,
       expires_at,
       version
FROM (SELECT key, expires_at, version, convert_from(value, 'UTF8')::jsonb AS record
      FROM billpay_kv
      WHERE key LIKE 'billpay:v1:payment:%'
        AND (expires_at IS NULL OR expires_at > now())) AS payments;
