-- 0005_routing.sql - routerd: streaming nodes, the last load each reported,
-- and each tenant's routing settings (bandwidth cap, shared pool access).
--
-- Nodes of tenant 0 are the platform's shared pool. Node ids come from one
-- identity (unique across tenants), so a shared-pool node and a tenant's own
-- node never share an id. Output formats are the API's OutputFormat numbers;
-- urls[i] is the base URL of formats[i]. state: 1 active, 2 draining,
-- 3 disabled (the API's NodeState). Health is not stored: routerd derives it
-- from the last heartbeat, and keeps it in memory on every replica.
--
-- Every change of a node or of a tenant's settings is announced on the
-- channel frontdesk_nodes ("node <tenant> <id>", "tenant <tenant>"), with the
-- replicas' heartbeat summaries ("hb ...", "closed ...", routerd sync.c).

CREATE TABLE frontdesk.nodes (
  tenant_id       bigint NOT NULL,
  id              bigint GENERATED ALWAYS AS IDENTITY,
  name            text NOT NULL,
  formats         smallint[] NOT NULL,
  urls            text[] NOT NULL,
  region          text NOT NULL,
  country         text NOT NULL DEFAULT '',
  failure_domain  text NOT NULL DEFAULT '',
  max_connections integer NOT NULL,
  max_egress_mbps bigint NOT NULL,
  weight          integer NOT NULL DEFAULT 100,
  tags            text[] NOT NULL DEFAULT '{}',
  high_water      smallint NOT NULL DEFAULT 90,
  low_water       smallint NOT NULL DEFAULT 75,
  state           smallint NOT NULL DEFAULT 1,
  state_reason    text NOT NULL DEFAULT '',
  key_hash        bytea NOT NULL,
  key_prefix      text NOT NULL,
  version         bigint NOT NULL DEFAULT 1,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CONSTRAINT nodes_name_unique UNIQUE (tenant_id, name),
  CONSTRAINT nodes_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
  CONSTRAINT nodes_urls CHECK (cardinality(formats) BETWEEN 1 AND 3 AND cardinality(urls) = cardinality(formats)),
  CONSTRAINT nodes_region_length CHECK (char_length(region) BETWEEN 1 AND 64),
  CONSTRAINT nodes_country CHECK (country ~ '^([A-Z]{2})?$'),
  CONSTRAINT nodes_failure_domain_length CHECK (char_length(failure_domain) <= 64),
  CONSTRAINT nodes_capacity CHECK (max_connections BETWEEN 1 AND 10000000
                                   AND max_egress_mbps BETWEEN 1 AND 10000000),
  CONSTRAINT nodes_weight CHECK (weight BETWEEN 0 AND 10000),
  CONSTRAINT nodes_tags CHECK (cardinality(tags) <= 32),
  CONSTRAINT nodes_water CHECK (high_water BETWEEN 1 AND 100 AND low_water BETWEEN 1 AND 99
                                AND low_water < high_water),
  CONSTRAINT nodes_state CHECK (state BETWEEN 1 AND 3),
  CONSTRAINT nodes_state_reason_length CHECK (char_length(state_reason) <= 200),
  CONSTRAINT nodes_key_hash CHECK (octet_length(key_hash) = 32)
);
CALL frontdesk.enable_tenant_rls('frontdesk.nodes');
GRANT SELECT, INSERT, UPDATE ON frontdesk.nodes TO frontdesk_routerd;
-- routerd takes the id first: the node key it hands out carries it.
GRANT USAGE ON SEQUENCE frontdesk.nodes_id_seq TO frontdesk_routerd;

-- The last heartbeat of each node, written by the replica that received it
-- about every second (FRONTDESK_ROUTERD_PERSIST_MS): what a restarted replica
-- starts from. stream_closed_at: the node's heartbeat stream ended after that
-- heartbeat (it is DOWN until it reports again).
CREATE TABLE frontdesk.node_live (
  tenant_id        bigint NOT NULL,
  node_id          bigint NOT NULL,
  heartbeat_at     timestamptz NOT NULL,
  connections      integer NOT NULL,
  egress_mbps      double precision NOT NULL,
  cpu_percent      double precision NOT NULL,
  overloaded       boolean NOT NULL,
  stream_closed_at timestamptz,
  PRIMARY KEY (tenant_id, node_id),
  FOREIGN KEY (tenant_id, node_id) REFERENCES frontdesk.nodes (tenant_id, id)
) WITH (fillfactor = 50);
CALL frontdesk.enable_tenant_rls('frontdesk.node_live');
GRANT SELECT, INSERT, UPDATE ON frontdesk.node_live TO frontdesk_routerd;

-- A tenant's routing settings; no row = the defaults (no cap, refuse at the
-- cap, 1000 kbit/s floor, shared pool allowed). policy: 1 refuse, 2 lower
-- the bitrate (the API's BandwidthPolicy).
CREATE TABLE frontdesk.tenant_routing (
  tenant_id           bigint NOT NULL PRIMARY KEY,
  max_egress_mbps     bigint NOT NULL DEFAULT 0,
  policy              smallint NOT NULL DEFAULT 1,
  min_bitrate_kbps    bigint NOT NULL DEFAULT 1000,
  shared_pool_allowed boolean NOT NULL DEFAULT true,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT tenant_routing_cap CHECK (max_egress_mbps BETWEEN 0 AND 10000000),
  CONSTRAINT tenant_routing_policy CHECK (policy BETWEEN 1 AND 2),
  CONSTRAINT tenant_routing_min_bitrate CHECK (min_bitrate_kbps BETWEEN 0 AND 1000000)
);
CALL frontdesk.enable_tenant_rls('frontdesk.tenant_routing');
GRANT SELECT, INSERT, UPDATE ON frontdesk.tenant_routing TO frontdesk_routerd;

-- RegisterNode's idempotency keys.
CREATE TABLE frontdesk.routing_idempotency (
  tenant_id    bigint NOT NULL,
  idem_key     text NOT NULL,
  request_hash bytea NOT NULL,
  result_id    bigint NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, idem_key),
  CONSTRAINT routing_idempotency_key_length CHECK (octet_length(idem_key) <= 300)
);
CALL frontdesk.enable_tenant_rls('frontdesk.routing_idempotency');
GRANT SELECT, INSERT ON frontdesk.routing_idempotency TO frontdesk_routerd;
