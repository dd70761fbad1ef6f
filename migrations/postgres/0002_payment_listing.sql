-- billpay-gateway store schema, version 2: the payment journal for SQL. Listing payment records
-- by caller, state, provider or creation time (newest first, as the gateway lists them) is an
-- index scan, and the billpay_payments view gains the amount and currency columns, so payments
-- can be reconciled against provider statements with plain SQL. Self-contained: it needs only
-- version 1's tables. Applied by `billpay-gateway store migrate` in one transaction; never edit
-- a shipped migration, add the next one instead.

-- A payment record (billpay_kv.value: UTF-8 JSON written by the gateway) as jsonb, for the
-- view and the indexes below. It never raises: an index expression that raised would fail the
-- gateway's write of that row, so whatever cannot be read as JSON (not UTF-8, not JSON: the
-- store is a key-value store and checks no value) reads as NULL. jsonb cannot hold U+0000,
-- which JSON text may (in a provider's message): each escaped NUL (\u0000 after an even run of
-- backslashes) reads as U+FFFD here, so such a record is still listed. The stored bytes are
-- never changed. IMMUTABLE so indexes can use it: the same bytes always read the same.
-- PARALLEL RESTRICTED: its exception block is a subtransaction, which parallel workers cannot
-- start. Cost: about 10 us per call for a 1 KB record; a payment write evaluates it 7 times.
CREATE FUNCTION billpay_record(value bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL RESTRICTED
AS $$
DECLARE
    record_text text;
BEGIN
    record_text := convert_from(value, 'UTF8');
    IF position('\u0000' in record_text) > 0 THEN
        record_text := regexp_replace(record_text,
                                      '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g');
    END IF;
    RETURN record_text::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- The listings, on payment records only (the partial index predicate is the view's own
-- key filter, so every query on the view can use them). Creation time is unix ms.
CREATE INDEX billpay_payments_by_created ON billpay_kv
    (((billpay_record(value) ->> 'created_at_ms')::bigint))
    WHERE key LIKE 'billpay:v1:payment:%';
CREATE INDEX billpay_payments_by_caller ON billpay_kv
    ((billpay_record(value) ->> 'caller'), ((billpay_record(value) ->> 'created_at_ms')::bigint))
    WHERE key LIKE 'billpay:v1:payment:%';
CREATE INDEX billpay_payments_by_state ON billpay_kv
    ((billpay_record(value) ->> 'state'), ((billpay_record(value) ->> 'created_at_ms')::bigint))
    WHERE key LIKE 'billpay:v1:payment:%';
CREATE INDEX billpay_payments_by_provider ON billpay_kv
    ((billpay_record(value) -> 'order' ->> 'provider'),
     ((billpay_record(value) ->> 'created_at_ms')::bigint))
    WHERE key LIKE 'billpay:v1:payment:%';

-- The payment journal for people and SQL: one row per live payment record. Columns as in
-- version 1 (same names, same order), then the amount and its currency. Values are the
-- record's own spellings: state 'Pending', 'Succeeded', 'Failed', 'OtpRequired',
-- 'ValidationRequired', 'Reversed', 'NeedsAttention', 'Scheduled'; provider 'InterIntel',
-- 'Switch', 'IntelworldIp2', 'OnePipe', 'Interswitch'; currency 'Ngn', 'Kes', 'Ugx'. Amounts
-- are integers in the currency's minor units; times are unix ms. The gateway itself reads
-- billpay_kv.
CREATE OR REPLACE VIEW billpay_payments AS
SELECT substr(key, length('billpay:v1:payment:') + 1)        AS payment_id,
       record ->> 'request_id'                               AS request_id,
       record ->> 'state'                                    AS state,
       record ->> 'caller'                                   AS caller,
       record -> 'order' ->> 'provider'                      AS provider,
       record ->> 'provider_reference'                       AS provider_reference,
       record ->> 'provider_transaction_id'                  AS provider_transaction_id,
       (record ->> 'created_at_ms')::bigint                  AS created_at_ms,
       (record ->> 'updated_at_ms')::bigint                  AS updated_at_ms,
       record,
       expires_at,
       version,
       (record -> 'order' -> 'amount' ->> 'minor_units')::bigint AS amount_minor_units,
       record -> 'order' -> 'amount' ->> 'currency'          AS currency
FROM (SELECT key, expires_at, version, billpay_record(value) AS record
      FROM billpay_kv
      WHERE key LIKE 'billpay:v1:payment:%'
        AND (expires_at IS NULL OR expires_at > now())) AS payments;
