-- The sockets table of OpenSIPS's sockets_mgm module, SQLite flavour.
-- Names are filled in from [sockets_mgm] by "sipsock-db init"; the script is
-- idempotent (running it twice changes nothing).
CREATE TABLE IF NOT EXISTS $version_table (
    table_name CHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx UNIQUE (table_name)
);

CREATE TABLE IF NOT EXISTS $table (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    $socket CHAR(128) NOT NULL,
    $advertised CHAR(128) DEFAULT NULL,
    $tag CHAR(128) DEFAULT NULL,
    $flags CHAR(128) DEFAULT NULL,
    $tos CHAR(32) DEFAULT NULL
);

INSERT INTO $version_table (table_name, table_version)
    SELECT '$table_name', $table_version
    WHERE NOT EXISTS (SELECT 1 FROM $version_table WHERE table_name = '$table_name');
