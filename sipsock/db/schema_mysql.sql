-- The sockets table of OpenSIPS's sockets_mgm module, MySQL / MariaDB flavour
-- (OpenSIPS's scripts/mysql/standard-create.sql and sockets_mgm-create.sql).
-- Names are filled in from [sockets_mgm] by "sipsock-db init"; the script is
-- idempotent (running it twice changes nothing). The character set is the
-- database's default, as with OpenSIPS's scripts.
CREATE TABLE IF NOT EXISTS $version_table (
    table_name CHAR(32) NOT NULL,
    table_version INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT t_name_idx UNIQUE (table_name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS $table (
    id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    $socket CHAR(128) NOT NULL,
    $advertised CHAR(128) DEFAULT NULL,
    $tag CHAR(128) DEFAULT NULL,
    $flags CHAR(128) DEFAULT NULL,
    $tos CHAR(32) DEFAULT NULL
) ENGINE=InnoDB;

INSERT INTO $version_table (table_name, table_version)
    SELECT '$table_name', $table_version FROM DUAL
    WHERE NOT EXISTS (SELECT 1 FROM $version_table WHERE table_name = '$table_name');
