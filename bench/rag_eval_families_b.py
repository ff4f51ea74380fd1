"""Hand-written parts of the retrieval evaluation corpus: runbooks (see rag_eval_families_a
for the family format). Variants are the same procedure for another region, cluster,
version or tier: the steps differ in the details on-call engineers get wrong."""

from __future__ import annotations

from rag_eval_families_a import Family

RUNBOOKS: list[Family] = [
    {
        "slug": "pg-failover",
        "title": "Runbook: PostgreSQL primary failover in {label}",
        "ident": "`{flag}`",
        "sections": [
            ("", [
                ("Use this runbook when the primary database of the {label} cluster "
                "({cluster}) is unreachable or unhealthy and the automatic failover did not "
                "complete. The cluster serves {serves}."),
            ]),
            ("Symptoms", [
                ("Write requests fail with connection timeouts while reads from replicas keep "
                "working. The replication lag alert fires on every replica at once, because "
                "they have lost their upstream."),
            ]),
            ("Before you start", [
                ("Check the status page of the cloud provider for the zone. If the whole zone "
                "is down, do not fail over into the same zone: pick the replica listed as "
                "preferred in the inventory."),
                ("Make sure the old primary is fenced. Fencing is governed by {ident}; the "
                "default of {fence_s} seconds is long enough for the storage to detach."),
            ]),
            ("Procedure", [
                ("1. Freeze deployments in the release channel. 2. Promote the preferred "
                "replica with the orchestrator command {promote_cmd}. 3. Update the service "
                "record so that applications reconnect. 4. Watch the error rate for ten "
                "minutes."),
                "{extra_step}",
            ]),
            ("Escalation", [
                ("If the promotion has not finished after {escalate_min} minutes, page "
                "{escalate_to}. Do not attempt a second promotion in parallel: two primaries "
                "are much worse than a longer outage."),
                "Afterwards open a postmortem ticket and link it here. See also {see_also}.",
            ]),
        ],
        "queries": {
            "paraphrase": ["the main database in {label} is down and did not switch over by itself",
                           "{label}: manually promote a replica when the primary dies"],
            "disambiguation": ["failover for the database cluster {cluster}",
                               "promote replica with {promote_cmd}"],
            "section": ["{label} database failover: when to escalate and to whom",
                        "who do I page if the {label} Postgres promotion is stuck"],
            "identifier": ["{ident}", "what does {ident} control"],
        },
        "variants": [
            {"label": "eu-west", "cluster": "pg-main-euw1", "serves": "orders and customer "
             "accounts for Europe", "flag": "pg.failover.fence_timeout_s", "fence_s": "30",
             "promote_cmd": "orchestrator-client -c graceful-master-takeover",
             "escalate_min": "15", "escalate_to": "the database reliability on-call",
             "extra_step": "5. Re-enable the nightly logical backup, which is paused by the "
             "promotion."},
            {"label": "us-east", "cluster": "pg-main-use1", "serves": "orders and customer "
             "accounts for the Americas", "flag": "pg.failover.fence_timeout_use1_s",
             "fence_s": "45", "promote_cmd": "patronictl failover --candidate",
             "escalate_min": "20", "escalate_to": "the storage team lead and the incident "
             "commander", "extra_step": "5. Rebuild the old primary as a replica from the "
             "latest snapshot, never by rewinding."},
            {"label": "ap-south", "cluster": "pg-main-aps1", "serves": "the catalogue and "
             "search indexing for Asia", "flag": "pg.failover.fence_timeout_aps1_s",
             "fence_s": "60", "promote_cmd": "patronictl switchover --force",
             "escalate_min": "10", "escalate_to": "the regional SRE lead in Singapore",
             "extra_step": "5. Tell the search team: their indexer must be restarted by hand."},
            {"label": "the billing ledger", "cluster": "pg-ledger-01", "serves": "invoices, "
             "payments and the general ledger", "flag": "ledger.failover.fence_timeout_s",
             "fence_s": "90", "promote_cmd": "ledgerctl promote --verify-checksums",
             "escalate_min": "5", "escalate_to": "the finance systems on-call and the CFO's "
             "delegate", "extra_step": "5. Run the ledger balance check before you reopen "
             "writes; it must report zero differences."},
        ],
    },
    {
        "slug": "kafka-lag",
        "title": "Runbook: consumer lag on the {label} Kafka cluster",
        "ident": "ALERT-{n}",
        "sections": [
            ("", [
                ("Alert {ident} fires when consumer groups on the {label} cluster fall more than "
                "{threshold} behind for ten minutes. Producers on this cluster are {producers}."),
            ]),
            ("First checks", [
                ("Look at the lag dashboard and find which consumer groups are behind. Lag on a "
                "single partition points to a slow or stuck consumer; lag on every partition "
                "points to the brokers or to a traffic spike."),
                "Compare the produce rate with last week's at the same hour.",
            ]),
            ("Remedies", [
                ("Restart stuck consumers one pod at a time. If the group is healthy but slow, "
                "scale it out; the maximum useful number of consumers equals the partition "
                "count, which is {partitions} for the busiest topic."),
                "{remedy}",
            ]),
            ("What not to do", [
                ("Never reset consumer offsets to the latest position to make the alert go "
                "away: the skipped messages are lost for good. Offset resets need approval "
                "from {owner}."),
            ]),
            ("Follow-up", [
                ("If the lag was caused by a traffic spike, file a capacity ticket. Related "
                "alert: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["messages piling up unprocessed on the {label} event stream",
                           "{label} Kafka consumers falling behind, what to do"],
            "disambiguation": ["Kafka lag alert with threshold {threshold}",
                               "consumer lag where the busiest topic has {partitions} partitions"],
            "section": ["who has to approve an offset reset on the {label} Kafka cluster",
                        "{label} Kafka: can I skip to the latest offset to clear the backlog"],
            "identifier": ["{ident}", "{ident} fired, runbook"],
        },
        "variants": [
            {"label": "orders", "threshold": "50,000 messages", "producers": "the checkout and "
             "order services", "partitions": "48", "owner": "the order platform lead",
             "remedy": "If the order-enricher group is the one behind, pause the "
             "recommendations consumer: it shares the same database."},
            {"label": "telemetry", "threshold": "5 million messages", "producers": "every "
             "client SDK and the edge proxies", "partitions": "256",
             "owner": "the observability team", "remedy": "Dropping debug-level telemetry at "
             "the edge is allowed during an incident and halves the volume."},
            {"label": "billing", "threshold": "2,000 messages", "producers": "the metering "
             "service and the payments gateway", "partitions": "12",
             "owner": "the finance systems lead and the controller",
             "remedy": "Billing consumers must never be scaled above twelve: ordering per "
             "account depends on the partition key."},
            {"label": "notifications", "threshold": "200,000 messages", "producers": "the "
             "notification scheduler", "partitions": "32", "owner": "the messaging team",
             "remedy": "Marketing sends can be delayed by pausing the campaign consumer group; "
             "transactional mail must keep flowing."},
            {"label": "search indexing", "threshold": "500,000 messages", "producers": "the "
             "catalogue and stock services", "partitions": "64", "owner": "the search team",
             "remedy": "Stock updates outrank description updates: pause the description "
             "consumer first."},
        ],
    },
    {
        "slug": "cert-rotation",
        "title": "Runbook: TLS certificate rotation for {label}",
        "ident": "OPS-{n}",
        "sections": [
            ("", [
                ("Certificates for {label} are issued by {issuer} and last {lifetime}. "
                "Rotation is automated; this runbook covers the cases where it is not."),
            ]),
            ("When automation fails", [
                ("The expiry alert fires {alert_days} days before expiry. Check the renewal "
                "job's last run: most failures are a DNS validation record that someone "
                "deleted, or an expired API token for the issuer."),
            ]),
            ("Manual renewal", [
                ("Request the certificate with {tool}. Store the key only in the secrets "
                "manager; never paste it into a ticket or a chat."),
                "Reload, do not restart, the proxies: a reload keeps existing connections.",
            ]),
            ("Verification", [
                "{verify}",
                ("Close the tracking ticket {ident} only after the monitoring shows the new "
                "expiry date on every endpoint."),
            ]),
            ("History", ["Previous manual rotations are listed in the ticket {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["renew the {label} TLS certificate by hand when auto renewal breaks",
                           "{label} certificate is about to expire and the job failed"],
            "disambiguation": ["certificates issued by {issuer}",
                               "certificate renewal using {tool}"],
            "section": ["{label} certificates: how to check the new one is live everywhere",
                        "after rotating the {label} cert, what do I verify before closing"],
            "identifier": ["{ident}", "ticket {ident}"],
        },
        "variants": [
            {"label": "the public website and API edge", "issuer": "a public ACME CA",
             "lifetime": "90 days", "alert_days": "21", "tool": "the certbot wrapper on the "
             "edge bastion", "verify": "Run the external TLS checker against every public "
             "hostname, including the regional API endpoints."},
            {"label": "the internal service mesh", "issuer": "the internal mesh CA",
             "lifetime": "24 hours", "alert_days": "1", "tool": "meshctl cert issue",
             "verify": "Confirm that mutual TLS handshakes succeed between two services in "
             "every namespace; the mesh dashboard shows failures per namespace."},
            {"label": "the partner mTLS gateway", "issuer": "the partner CA run by Security",
             "lifetime": "one year", "alert_days": "45", "tool": "the partner certificate "
             "request form in the security portal", "verify": "Ask two partners to run their "
             "connection test; send every partner the new chain 30 days before the switch."},
            {"label": "the VPN concentrators", "issuer": "the corporate PKI",
             "lifetime": "two years", "alert_days": "60", "tool": "the PKI enrolment portal",
             "verify": "Connect from a test laptop on each VPN profile and confirm that the "
             "client trusts the chain without a warning."},
        ],
    },
    {
        "slug": "payment-timeouts",
        "title": "Runbook: payment provider timeouts ({label})",
        "ident": "E-{n}",
        "sections": [
            ("", [
                ("Checkout calls to the card processor for {label} time out, and customers see "
                "error {ident} on the payment page. The processor for this region is {psp}."),
            ]),
            ("Is it us or them?", [
                ("Check the processor's status page and our outbound latency graph. If only "
                "one of our regions is affected, the problem is probably our egress, not the "
                "processor."),
            ]),
            ("Mitigation", [
                ("Raise the retry budget with the flag {flag} to {budget}. Retries reuse the "
                "idempotency key, so a customer is never charged twice."),
                "{fallback}",
            ]),
            ("Communication", [
                ("After fifteen minutes of elevated errors, post on the status page with the "
                "prepared template. Customer support must be told before the post goes out, "
                "so that agents know the wording."),
            ]),
            ("Recovery", [
                ("Return the retry budget to its default once the error rate has been normal "
                "for thirty minutes. Reconcile payments that timed out: the processor may "
                "have authorised them. Related error code: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["card payments hanging in {label} at checkout",
                           "customers in {label} cannot pay, the processor is slow"],
            "disambiguation": ["payment timeouts with {psp}",
                               "checkout errors where the retry budget goes to {budget}"],
            "section": ["{label} payment outage: when do we post on the status page",
                        "{label} card processor timeouts: what to do after it recovers"],
            "identifier": ["{ident}", "customer sees {ident} at checkout"],
        },
        "variants": [
            {"label": "EU", "psp": "the Amsterdam acquirer", "flag": "payments.eu.retry_budget_ms",
             "budget": "8,000 ms", "fallback": "If the acquirer is fully down, switch EU "
             "traffic to the secondary acquirer in the routing console; 3-D Secure flows "
             "move with it."},
            {"label": "US", "psp": "the Chicago processor", "flag": "payments.us.retry_budget_ms",
             "budget": "6,000 ms", "fallback": "There is no secondary processor for US cards: "
             "enable the 'pay later' banner instead."},
            {"label": "LATAM", "psp": "the São Paulo processor", "flag": "payments.latam.retry_budget_ms",
             "budget": "12,000 ms", "fallback": "Offer Pix as the payment method of choice "
             "while cards are affected."},
            {"label": "APAC", "psp": "the Singapore gateway", "flag": "payments.apac.retry_budget_ms",
             "budget": "10,000 ms", "fallback": "Switch Japanese cards to the Tokyo acquirer; "
             "other markets wait."},
        ],
    },
    {
        "slug": "disk-full",
        "title": "Runbook: disk full on {label}",
        "ident": "ALERT-{n}",
        "sections": [
            ("", [
                ("Alert {ident} fires when a {label} volume passes {pct} percent usage. These "
                "hosts {role}."),
            ]),
            ("Find what is growing", [
                ("Log in through the bastion and list the largest directories on the volume. "
                "Compare with the same host a week ago on the capacity dashboard."),
            ]),
            ("Safe to delete", [
                "{safe}",
                ("Never delete files that a running process still holds open: the space is not "
                "returned until the process restarts, and you may lose data."),
            ]),
            ("If space cannot be freed", [
                ("Grow the volume online with the cloud console; the file system is extended "
                "by the resize helper. Growing is limited to {max_size} per volume; beyond "
                "that, ask {owner} to add a host."),
            ]),
            ("Related", ["See also alert {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["{label} running out of storage space",
                           "no space left on device on the {label}"],
            "disambiguation": ["disk alert at {pct} percent",
                               "volume that can grow to at most {max_size}"],
            "section": ["what is safe to delete when the {label} fill up",
                        "{label} full disk: which files can I remove"],
            "identifier": ["{ident}", "alert {ident}"],
        },
        "variants": [
            {"label": "log aggregation hosts", "pct": "85", "role": "receive logs from every "
             "service before indexing", "safe": "Compressed log segments older than two days "
             "have already been indexed and shipped; remove them with the cleanup script.",
             "max_size": "4 TB", "owner": "the observability team"},
            {"label": "CI build agents", "pct": "90", "role": "run every pipeline job",
             "safe": "Docker images and build caches can all be pruned; the next build "
             "downloads what it needs.", "max_size": "1 TB", "owner": "developer productivity"},
            {"label": "Postgres replicas", "pct": "75", "role": "serve read traffic and "
             "backups", "safe": "Nothing in the data directory is ever safe to delete by hand. "
             "Only old WAL archives in the staging area may go, after the backup check passes.",
             "max_size": "16 TB", "owner": "database reliability"},
            {"label": "Prometheus servers", "pct": "80", "role": "store fifteen days of "
             "metrics", "safe": "Lower the retention to ten days in the configuration and "
             "reload; blocks beyond it are removed at the next compaction.",
             "max_size": "8 TB", "owner": "the observability team"},
        ],
    },
    {
        "slug": "flag-rollback",
        "title": "Runbook: rolling back a feature flag ({label})",
        "ident": "E-{n}",
        "sections": [
            ("", [
                ("How to turn a feature off quickly when a release misbehaves, for flags served "
                "by {label}. Rolling back a flag is faster than rolling back a deployment and "
                "is always the first thing to try."),
            ]),
            ("Find the flag", [
                ("Search the flag console for the feature name. Flags are grouped by team; the "
                "owner is shown next to each flag, with their on-call rotation."),
            ]),
            ("Turn it off", [
                "{off_steps}",
                "A flag change reaches clients in {propagation}.",
            ]),
            ("If the change does not apply", [
                ("Clients that cannot reach the flag service keep their last known values. The "
                "SDK logs error {ident} when its cache is older than {stale}. Restarting those "
                "clients forces a fresh fetch."),
            ]),
            ("Audit", [
                ("Every change is recorded with the author and a reason. Write the incident "
                "number in the reason field. Related error: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["switch off a broken feature quickly using {label}",
                           "{label}: disable a feature without redeploying"],
            "disambiguation": ["flag changes that propagate in {propagation}",
                               "feature flags whose SDK cache goes stale after {stale}"],
            "section": ["{label}: clients still show the old flag value, what now",
                        "{label} flag change not taking effect on some clients"],
            "identifier": ["{ident}", "SDK logs {ident}"],
        },
        "variants": [
            {"label": "flag service v1", "off_steps": "Set the default variation to 'off' and "
             "remove all targeting rules. Version 1 has no kill switch button.",
             "propagation": "up to five minutes, the polling interval", "stale": "one hour"},
            {"label": "flag service v2", "off_steps": "Press the kill switch on the flag page. "
             "Targeting rules are kept so the flag can be turned back on as it was.",
             "propagation": "a few seconds over the streaming connection", "stale": "ten minutes"},
            {"label": "the mobile remote config", "off_steps": "Publish a new config version "
             "with the parameter set to false. Mobile apps fetch it at the next launch.",
             "propagation": "up to twelve hours for apps in the background", "stale": "24 hours"},
            {"label": "flag service v3", "off_steps": "Use the rollback button on the flag's "
             "history tab, which restores the previous published state including targeting.",
             "propagation": "under a second through the edge cache", "stale": "two minutes"},
        ],
    },
    {
        "slug": "dns-change",
        "title": "Runbook: making DNS changes in the {label}",
        "ident": "OPS-{n}",
        "sections": [
            ("", [
                ("Changes to records in the {label} ({zone}) go through review like code. "
                "This runbook covers urgent changes during an incident."),
            ]),
            ("Normal changes", [
                ("Edit the zone file in the infrastructure repository and open a merge request. "
                "The pipeline validates the zone and applies it after approval by {approver}."),
            ]),
            ("Urgent changes", [
                ("During an incident the incident commander may approve a change in the chat "
                "channel. Apply it with {tool} and record the change in ticket {ident}."),
                "The TTL of most records is {ttl}; lower it an hour before planned migrations.",
            ]),
            ("Rolling back", [
                ("Revert the merge request or reapply the previous record. Remember that "
                "resolvers keep the old answer until the TTL runs out; there is no way to "
                "flush caches outside our network."),
            ]),
            ("History", ["Earlier urgent changes: {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["change a hostname record in the {label} during an outage",
                           "{label}: point a name at a new address urgently"],
            "disambiguation": ["DNS changes in the zone {zone}",
                               "DNS records with a TTL of {ttl}"],
            "section": ["how to undo a bad record in the {label}",
                        "{label}: revert a DNS change that broke things"],
            "identifier": ["{ident}", "{ident} DNS"],
        },
        "variants": [
            {"label": "public DNS zone", "zone": "larkspur.example", "approver": "a member of "
             "the edge team", "tool": "the provider's CLI from the edge bastion", "ttl": "300 seconds"},
            {"label": "internal DNS zone", "zone": "corp.larkspur.internal", "approver": "any "
             "SRE", "tool": "the internal DNS operator's kubectl plugin", "ttl": "60 seconds"},
            {"label": "customer vanity domains", "zone": "custom domains on the CDN",
             "approver": "the customer success engineer for the account",
             "tool": "the CDN domain API", "ttl": "3600 seconds"},
            {"label": "reverse DNS zones", "zone": "the in-addr.arpa delegations of our "
             "address blocks", "approver": "the network team", "tool": "the registry's "
             "web console, with two people present", "ttl": "86400 seconds"},
        ],
    },
    {
        "slug": "redis-eviction",
        "title": "Runbook: Redis memory pressure on the {label} cache",
        "ident": "`{flag}`",
        "sections": [
            ("", [
                ("The {label} cache runs Redis {version} and holds {holds}. This runbook applies "
                "when memory use passes {pct} percent or evictions start."),
            ]),
            ("Why it matters", [
                "{impact}",
            ]),
            ("Steps", [
                ("Check the largest keys with the sampling script; a single runaway key is the "
                "usual cause. Check the eviction policy: it is set by {ident} and should be "
                "{policy}."),
                ("Scaling up the node type requires a failover to the replica, which takes "
                "about a minute of reconnects."),
            ]),
            ("Escalation", [
                ("If evictions continue after the runaway key is gone, page {owner}. Related "
                "setting: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["the {label} cache is almost out of memory",
                           "{label} Redis evicting keys"],
            "disambiguation": ["Redis {version} cache memory runbook",
                               "cache whose eviction policy should be {policy}"],
            "section": ["who to page when the {label} cache keeps evicting",
                        "{label} Redis: evictions continue, escalate to whom"],
            "identifier": ["{ident}", "value of {ident}"],
        },
        "variants": [
            {"label": "session", "version": "7.2", "holds": "login sessions",
             "pct": "80", "flag": "cache.session.maxmemory_policy", "policy": "noeviction",
             "impact": "Evicted sessions log users out. Evictions here are an outage.",
             "owner": "the identity team"},
            {"label": "rate-limit", "version": "7.0", "holds": "request counters for the API "
             "rate limiter", "pct": "85", "flag": "cache.ratelimit.maxmemory_policy",
             "policy": "volatile-ttl", "impact": "Evicted counters reset limits, so abusive "
             "clients get through. Legitimate clients notice nothing.", "owner": "the API "
             "platform team"},
            {"label": "catalogue", "version": "6.2", "holds": "rendered product pages",
             "pct": "90", "flag": "cache.catalog.maxmemory_policy", "policy": "allkeys-lru",
             "impact": "Evictions only cost latency; pages are re-rendered on demand.",
             "owner": "the storefront team"},
            {"label": "feature store", "version": "7.4", "holds": "precomputed features for "
             "the recommendation models", "pct": "70", "flag": "cache.features.maxmemory_policy",
             "policy": "volatile-lru", "impact": "Evicted features fall back to defaults and "
             "recommendations get worse, quietly.", "owner": "the machine learning platform team"},
        ],
    },
    {
        "slug": "deploy-freeze",
        "title": "Deployment freeze calendar and rules: {label}",
        "ident": "CHG-{n}",
        "sections": [
            ("", [
                ("During the {label} freeze ({window}) production deployments stop except for "
                "emergency fixes. The freeze protects {reason}."),
            ]),
            ("What is allowed", [
                ("Fixes for active incidents, security patches rated high or critical, and "
                "configuration changes that reduce risk, such as turning a flag off."),
            ]),
            ("Requesting an exception", [
                ("Open change request {ident} with the risk assessment and the rollback plan. "
                "Exceptions are approved by {approver}."),
            ]),
            ("After the freeze", [
                ("The first day after a freeze is busy. Deploy in small batches and keep "
                "{after_rule}. Previous freeze: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["can I ship to production during the {label} freeze",
                           "{label}: releases paused, what exceptions exist"],
            "disambiguation": ["deployment freeze from {window}",
                               "freeze where exceptions are approved by {approver}"],
            "section": ["{label} freeze is over, how should we deploy the backlog",
                        "first deployments after the {label} freeze, any rules"],
            "identifier": ["{ident}", "change request {ident}"],
        },
        "variants": [
            {"label": "Black Friday 2024", "window": "25 November to 3 December 2024",
             "reason": "the highest traffic week of the year", "approver": "the VP of "
             "Engineering", "after_rule": "the freeze on-call staffing for one more day"},
            {"label": "year-end 2024", "window": "20 December 2024 to 2 January 2025",
             "reason": "the finance close and reduced staffing", "approver": "the CTO or the "
             "CFO", "after_rule": "finance informed of every change touching billing"},
            {"label": "Black Friday 2025", "window": "24 November to 2 December 2025",
             "reason": "the highest traffic week of the year", "approver": "the incident "
             "commander on duty", "after_rule": "a second reviewer on every change for two days"},
            {"label": "year-end 2025", "window": "19 December 2025 to 5 January 2026",
             "reason": "the finance close, the audit and reduced staffing",
             "approver": "the CTO", "after_rule": "deployments limited to business hours for "
             "the first week"},
        ],
    },
]
