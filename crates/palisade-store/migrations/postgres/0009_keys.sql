-- Encryption at rest (KMS-1 … KMS-3): data keys per owner (a workspace id, or `instance`), each
-- with a version; rotation jobs that re-encrypt an owner's sealed values under a new version.

-- One row per (owner, version): two nodes creating the same version race on this index.
DROP INDEX data_keys_owner_version;
CREATE UNIQUE INDEX data_keys_owner_version ON data_keys (owner, version);
-- A version seals nothing before activates_at (every node has loaded it by then); retired_at
-- is set once no stored value is sealed under it (it still opens stragglers).
ALTER TABLE data_keys ADD COLUMN activates_at TIMESTAMPTZ;
ALTER TABLE data_keys ADD COLUMN retired_at TIMESTAMPTZ;
UPDATE data_keys SET activates_at = created_at;
ALTER TABLE data_keys ALTER COLUMN activates_at SET NOT NULL;

-- A re-encryption job: owner's values move to to_version in passes over every sealed column;
-- done when a whole pass finds nothing sealed under an older version. Resumable: `phase` and
-- `cursor` say where the running pass is. Each page is worked under the job row's lock.
CREATE TABLE key_rotations (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    owner        TEXT COLLATE "C" NOT NULL,
    to_version   BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    state        TEXT NOT NULL,
    pass         BIGINT NOT NULL,
    phase        TEXT NOT NULL,
    cursor       TEXT COLLATE "C" NOT NULL,
    found        BIGINT NOT NULL,
    resealed     BIGINT NOT NULL,
    scanned      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX key_rotations_owner_version ON key_rotations (owner, to_version);
CREATE INDEX key_rotations_open ON key_rotations (state) WHERE state <> 'done';

-- Re-wrapping (master rotation), retiring and re-sealing change only these columns.
GRANT UPDATE (wrapped, retired_at) ON data_keys TO palisade_app;
GRANT UPDATE (sealed_seed) ON signing_keys TO palisade_app;
GRANT UPDATE (sealed_seed) ON audit_keys TO palisade_app;
GRANT SELECT, INSERT, UPDATE ON key_rotations TO palisade_app;
