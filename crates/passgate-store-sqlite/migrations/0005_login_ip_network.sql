-- The per-IP limit counts networks, not addresses: an IPv4 address, or the
-- /64 of an IPv6 address (one host usually holds a whole /64). A login keeps
-- what the limit counts; its events keep the address the app passed. (The
-- index on the column follows the rename.)
ALTER TABLE logins RENAME COLUMN ip_address TO ip_network;
