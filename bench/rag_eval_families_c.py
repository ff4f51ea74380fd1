"""Hand-written parts of the retrieval evaluation corpus: postmortems and product/tier
pages (see rag_eval_families_a for the family format). Postmortems of the same kind of
failure look alike; what differs is when, where, the cause and the follow-ups."""

from __future__ import annotations

from rag_eval_families_a import Family

POSTMORTEMS: list[Family] = [
    {
        "slug": "pm-checkout",
        "title": "Postmortem: checkout outage, {label}",
        "ident": "INC-{n}",
        "sections": [
            ("", [
                ("Incident {ident}. On {date} customers in {region} could not complete "
                "purchases for {duration}. This document is blameless: it describes what "
                "happened and what we change, not who is at fault."),
            ]),
            ("Impact", [
                ("About {orders} orders failed. Carts were preserved, and most customers "
                "completed their purchase after recovery. Support received a surge of chats."),
            ]),
            ("Timeline", [
                "{timeline}",
            ]),
            ("Root cause", [
                "{cause}",
            ]),
            ("What went well and what did not", [
                ("Detection was quick: the checkout success-rate alert fired within two "
                "minutes. Communication was slower, because the status page template did not "
                "cover partial regional outages."),
            ]),
            ("Action items", [
                "{actions} Related incident: {see_also}.",
            ]),
        ],
        "queries": {
            "paraphrase": ["why could nobody buy anything in {region} on {date}",
                           "{label} checkout failure: what broke"],
            "disambiguation": ["checkout outage that lasted {duration}",
                               "checkout incident with about {orders} failed orders"],
            "section": ["follow-up actions agreed after the {label} checkout outage",
                        "{label} checkout postmortem: what are we changing"],
            "identifier": ["{ident}", "{ident} postmortem"],
        },
        "variants": [
            {"label": "November 2023", "date": "24 November 2023", "region": "Europe",
             "duration": "47 minutes", "orders": "18,000",
             "timeline": "09:12 deploy of the tax service. 09:14 success rate drops. 09:31 "
             "rollback started. 09:59 recovered after the cache was warmed.",
             "cause": "A new tax rounding rule threw an exception for prices with three "
             "decimal places, which only occur in the Kuwaiti dinar price list.",
             "actions": "Add property-based tests for currency rounding; canary the tax "
             "service per currency."},
            {"label": "June 2024", "date": "11 June 2024", "region": "North America",
             "duration": "2 hours 5 minutes", "orders": "41,000",
             "timeline": "14:02 certificate on the payment proxy expired. 14:03 all card "
             "payments fail. 15:40 cause found. 16:07 new certificate deployed.",
             "cause": "The payment proxy's certificate was issued manually years ago and was "
             "missing from the automated renewal inventory.",
             "actions": "Import every certificate into the inventory; alert 30 days before "
             "any expiry regardless of issuer."},
            {"label": "February 2025", "date": "3 February 2025", "region": "Europe",
             "duration": "22 minutes", "orders": "6,500",
             "timeline": "19:40 a marketing push doubles traffic. 19:41 connection pool to "
             "the orders database exhausted. 19:55 pool raised. 20:02 recovered.",
             "cause": "The connection pool size had been copied from a staging configuration "
             "during a migration and was a quarter of the production value.",
             "actions": "Lint production configuration against staging values; tell the "
             "platform team before large marketing pushes."},
            {"label": "August 2025", "date": "14 August 2025", "region": "Asia-Pacific",
             "duration": "1 hour 12 minutes", "orders": "9,800",
             "timeline": "02:30 a routing change at the CDN. 02:31 checkout API returns 403 "
             "for Japanese IP ranges. 03:20 geo-blocking rule identified. 03:42 reverted.",
             "cause": "A geo-blocking rule meant for a sanctioned region was written with an "
             "overlapping IP range list.",
             "actions": "Review geo rules in pairs; add a synthetic checkout test from every "
             "APAC market."},
        ],
    },
    {
        "slug": "pm-login",
        "title": "Postmortem: login failures, {label}",
        "ident": "INC-{n}",
        "sections": [
            ("", [
                ("Incident {ident}: between {window} a share of users could not sign in "
                "through {path}. Peak failure rate was {peak}."),
            ]),
            ("Customer impact", [
                ("Users already signed in were not affected. New sign-ins failed with a "
                "generic error, and password resets were attempted in large numbers, which "
                "added load."),
            ]),
            ("Root cause", ["{cause}"]),
            ("Detection", [
                "{detection}",
            ]),
            ("Follow-ups", ["{actions} See also {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["people could not log in via {path} in {label}",
                           "{label} sign-in problems: what happened"],
            "disambiguation": ["login incident with a peak failure rate of {peak}",
                               "sign-in outage between {window}"],
            "section": ["how was the {label} login incident detected",
                        "{label} login failures: who noticed first"],
            "identifier": ["{ident}", "incident {ident}"],
        },
        "variants": [
            {"label": "January 2024", "window": "08:00 and 09:30 UTC on 15 January 2024",
             "path": "single sign-on with the corporate identity provider", "peak": "38 percent",
             "cause": "The identity provider rotated its signing keys and our cached key set "
             "was refreshed only every 24 hours.",
             "detection": "A customer admin reported it to support; our alert only watched "
             "password logins.", "actions": "Refresh key sets on unknown key ids; alert on "
             "SSO failure rate."},
            {"label": "September 2024", "window": "17:10 and 17:55 UTC on 9 September 2024",
             "path": "the iOS app", "peak": "64 percent",
             "cause": "App version 8.4 sent the device clock in local time; tokens appeared "
             "to be issued in the future and were rejected.",
             "detection": "The mobile crash dashboard showed a spike of auth errors seven "
             "minutes after the release reached 20 percent.",
             "actions": "Server-side clock tolerance of five minutes; staged mobile rollouts "
             "pause automatically on auth errors."},
            {"label": "April 2025", "window": "11:20 and 11:48 UTC on 2 April 2025",
             "path": "email and password", "peak": "12 percent",
             "cause": "A bot wave triggered the rate limiter, whose key included only the "
             "client IP, so a large carrier NAT was blocked.",
             "detection": "The login success-rate alert fired after nine minutes.",
             "actions": "Rate limit on account and IP together; allowlist carrier NAT ranges "
             "with a higher limit."},
            {"label": "October 2025", "window": "06:05 and 07:40 UTC on 21 October 2025",
             "path": "passkeys on Android", "peak": "27 percent",
             "cause": "A change to the relying party id after the domain migration made "
             "existing passkeys invalid for the new domain.",
             "detection": "Synthetic login checks use passwords only and stayed green; "
             "support noticed after an hour.", "actions": "Add a passkey synthetic check; "
             "treat relying party changes as breaking."},
        ],
    },
    {
        "slug": "pm-billing",
        "title": "Postmortem: customers charged twice, {label}",
        "ident": "INC-{n}",
        "sections": [
            ("", [
                ("Incident {ident}. In {label}, {customers} customers were charged twice for "
                "{what}. Every duplicate charge was refunded within {refund}."),
            ]),
            ("How it happened", ["{cause}"]),
            ("Why we did not catch it earlier", [
                ("The daily reconciliation compares totals, not individual charges, so "
                "duplicates that roughly matched refunds of the same day cancelled out."),
            ]),
            ("Customer communication", [
                ("Affected customers received an apology email with the refund reference. "
                "Enterprise accounts were called by their account manager. {credit}"),
            ]),
            ("Action items", ["{actions} Related: {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["double billing in {label}, what caused it",
                           "why were people charged two times for {what}"],
            "disambiguation": ["duplicate charges affecting {customers} customers",
                               "double charge incident where refunds took {refund}"],
            "section": ["{label} double charge: what did we tell enterprise customers",
                        "{label} duplicate billing: was any credit given"],
            "identifier": ["{ident}", "{ident} refunds"],
        },
        "variants": [
            {"label": "May 2023", "customers": "2,140", "what": "their monthly subscription",
             "refund": "three days", "cause": "A retry in the renewal job was not "
             "idempotent: a timeout after the charge succeeded led to a second charge.",
             "credit": "No service credit was offered.", "actions": "Idempotency keys on "
             "every renewal charge; reconciliation per charge."},
            {"label": "October 2024", "customers": "860", "what": "annual plan upgrades",
             "refund": "one day", "cause": "The upgrade flow charged the prorated amount and "
             "the new plan price, because a feature flag enabled the new pricing engine on "
             "only one of the two code paths.", "credit": "Every affected account got one "
             "month of service credit.", "actions": "One code path for upgrades; contract "
             "tests between the pricing engine and billing."},
            {"label": "March 2025", "customers": "310", "what": "usage overage invoices",
             "refund": "five days", "cause": "A Kafka consumer restarted during a rebalance "
             "and re-processed a batch of metering events without deduplication.",
             "credit": "Credits were offered on request.", "actions": "Deduplicate metering "
             "events by event id; alert when overage totals jump."},
            {"label": "August 2025", "customers": "1,275", "what": "marketplace add-on "
             "purchases", "refund": "two days", "cause": "The marketplace partner and our "
             "billing both charged the card after a contract change moved billing to us "
             "without turning theirs off.", "credit": "Affected customers received the add-on "
             "free for three months.", "actions": "A shared cut-over checklist with partners; "
             "a daily check for charges from two merchants."},
        ],
    },
    {
        "slug": "pm-search",
        "title": "Postmortem: stale search results, {label}",
        "ident": "INC-{n}",
        "sections": [
            ("", [
                ("Incident {ident}. From {start} search results on the storefront showed "
                "{symptom} for {duration}."),
            ]),
            ("Cause", ["{cause}"]),
            ("Recovery", [
                ("A full reindex was started from the catalogue snapshot. It took {reindex}; "
                "queries were served from the old index meanwhile, with a banner on product "
                "pages that prices may be out of date."),
            ]),
            ("Lessons", [
                ("Index freshness was not monitored: we measured query latency and errors, "
                "neither of which changed. {lesson} Related: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["search showing old data on the storefront in {label}",
                           "{label}: outdated search results, cause"],
            "disambiguation": ["search incident where results showed {symptom}",
                               "stale search lasting {duration}"],
            "section": ["how long did the reindex take after the {label} search incident",
                        "{label} stale search: how was it recovered"],
            "identifier": ["{ident}", "{ident} search"],
        },
        "variants": [
            {"label": "March 2024", "start": "6 March 2024", "symptom": "products that were "
             "sold out as available", "duration": "two days", "cause": "The indexer's "
             "consumer group was renamed in a refactor and started from the latest offset, "
             "skipping two days of stock updates.", "reindex": "five hours",
             "lesson": "We now alert when the newest indexed update is older than 15 minutes."},
            {"label": "January 2025", "start": "13 January 2025", "symptom": "last year's "
             "prices", "duration": "nine hours", "cause": "The price import wrote to a new "
             "table, and the indexer still read the old one.", "reindex": "three hours",
             "lesson": "Price changes now carry a version that search checks."},
            {"label": "July 2025", "start": "2 July 2025", "symptom": "deleted products",
             "duration": "four days", "cause": "Deletion events were filtered out by a new "
             "schema validation that treated an empty payload as invalid.",
             "reindex": "six hours", "lesson": "Schema validation now sends rejects to a "
             "dead-letter topic with an alert."},
            {"label": "November 2025", "start": "27 November 2025", "symptom": "products in "
             "the wrong language", "duration": "eleven hours", "cause": "A translation "
             "backfill overwrote the default locale field for every product touched by the "
             "job.", "reindex": "seven hours", "lesson": "Backfills run against a shadow "
             "index first and are compared before the switch."},
        ],
    },
    {
        "slug": "pm-email",
        "title": "Postmortem: delayed transactional email, {label}",
        "ident": "INC-{n}",
        "sections": [
            ("", [
                ("Incident {ident}. Password reset and order confirmation emails were delayed "
                "by up to {delay} on {date}."),
            ]),
            ("Cause", ["{cause}"]),
            ("Impact", [
                "Customers retried password resets, which queued more mail. {impact}",
            ]),
            ("Changes", ["{actions} Related: {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["password reset mails arriving very late in {label}",
                           "{label}: order confirmations slow to arrive"],
            "disambiguation": ["email incident with delays of up to {delay}",
                               "email delay on {date}"],
            "section": ["what did we change after the {label} email delay",
                        "{label} late emails: follow-up changes"],
            "identifier": ["{ident}", "{ident} email"],
        },
        "variants": [
            {"label": "December 2022", "delay": "six hours", "date": "12 December 2022",
             "cause": "A marketing campaign shared the sending queue and IP pool with "
             "transactional email.", "impact": "Support tickets tripled for the day.",
             "actions": "Separate queues and IP pools for transactional and marketing mail."},
            {"label": "December 2024", "delay": "90 minutes", "date": "2 December 2024",
             "cause": "Our email provider throttled us after a spike of bounces from an old "
             "address list.", "impact": "Some customers missed limited-time offers.",
             "actions": "Bounce rate alert; list hygiene before every seasonal send."},
            {"label": "June 2025", "delay": "three hours", "date": "18 June 2025",
             "cause": "A DNS change removed the SPF include of the provider, and large "
             "mailbox providers deferred our mail.", "impact": "A third of reset emails "
             "landed in spam once they arrived.", "actions": "DMARC report monitoring; "
             "email records protected in the DNS review."},
            {"label": "March 2023", "delay": "four hours", "date": "7 March 2023",
             "cause": "The mail relay's disk filled with a retry queue for a domain that "
             "had stopped accepting mail.", "impact": "Order confirmations for the spring "
             "sale arrived after the delivery notices.", "actions": "Expire retries after "
             "24 hours; a disk alert on the relays."},
        ],
    },
]

PRODUCT: list[Family] = [
    {
        "slug": "support-sla",
        "title": "Support service levels: {label} plan",
        "ident": "SLA-{n}",
        "sections": [
            ("", [
                ("What customers on the {label} plan can expect from support, as referenced "
                "by contract schedule {ident}."),
            ]),
            ("Channels", ["{channels}"]),
            ("Response times", [
                ("First response to an urgent ticket within {urgent}; to a normal ticket "
                "within {normal}. Urgent means production is down or data is at risk."),
            ]),
            ("Escalation", [
                ("Customers can escalate a ticket {escalation}. Escalated tickets are reviewed "
                "by a support lead within one business day."),
            ]),
            ("Service credits", ["{credits} Compare: {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["how fast does support answer {label} customers",
                           "{label} plan: support reply time for an emergency"],
            "disambiguation": ["support plan with urgent response within {urgent}",
                               "plan where normal tickets are answered within {normal}"],
            "section": ["{label} plan: do customers get money back if support is late",
                        "service credits for missed support response on {label}"],
            "identifier": ["{ident}", "schedule {ident}"],
        },
        "variants": [
            {"label": "Free", "channels": "Community forum and documentation only; no "
             "tickets.", "urgent": "no guaranteed time", "normal": "no guaranteed time",
             "escalation": "only by upgrading", "credits": "No service credits apply."},
            {"label": "Team", "channels": "Email tickets during business hours in the "
             "customer's region.", "urgent": "8 business hours", "normal": "2 business days",
             "escalation": "after three business days without progress",
             "credits": "No service credits apply; refunds are handled case by case."},
            {"label": "Business", "channels": "Email and chat, 24 hours on weekdays.",
             "urgent": "2 hours", "normal": "1 business day", "escalation": "at any time "
             "from the ticket page", "credits": "Five percent of the monthly fee per missed "
             "urgent response, up to twenty-five percent."},
            {"label": "Enterprise", "channels": "Phone, chat and email around the clock, "
             "plus a named technical account manager.", "urgent": "30 minutes",
             "normal": "4 hours", "escalation": "directly to the technical account manager",
             "credits": "Ten percent of the monthly fee per missed urgent response, up to "
             "fifty percent."},
            {"label": "Enterprise Plus", "channels": "Everything in Enterprise, plus a shared "
             "chat channel with the engineering team.", "urgent": "15 minutes",
             "normal": "2 hours", "escalation": "to the duty engineering manager by phone",
             "credits": "Fifteen percent of the monthly fee per missed urgent response, with "
             "no upper limit in the first year."},
        ],
    },
    {
        "slug": "api-limits",
        "title": "API rate limits: {label} plan (API {api})",
        "ident": "`{flag}`",
        "sections": [
            ("", [
                ("Request limits for the public API version {api} on the {label} plan. Limits "
                "are per API key and measured over a sliding window."),
            ]),
            ("Limits", [
                ("{rpm} requests per minute and {burst} requests in any one-second burst. Bulk "
                "endpoints count {bulk_weight} requests per call."),
            ]),
            ("When you hit the limit", [
                ("The API answers 429 with a Retry-After header. Clients should back off "
                "exponentially with jitter; retrying immediately counts against the limit."),
            ]),
            ("Raising the limit", [
                ("{raise_rule} Internally the override is stored in {ident}. Related: "
                "{see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["how many calls per minute can a {label} customer make to API {api}",
                           "{label} API {api} throttling thresholds"],
            "disambiguation": ["API limit of {rpm} requests per minute",
                               "rate limit with bursts of {burst} requests"],
            "section": ["can a {label} customer get a higher API {api} limit",
                        "{label} plan API {api}: request a quota increase"],
            "identifier": ["{ident}", "override {ident}"],
        },
        "variants": [
            {"label": "Free", "api": "v1", "rpm": "60", "burst": "5", "bulk_weight": "10",
             "flag": "ratelimit.v1.free.rpm_override", "raise_rule": "Free limits are never "
             "raised; upgrade instead."},
            {"label": "Team", "api": "v1", "rpm": "600", "burst": "20", "bulk_weight": "10",
             "flag": "ratelimit.v1.team.rpm_override", "raise_rule": "Support may double the "
             "limit for up to thirty days for a migration."},
            {"label": "Team", "api": "v2", "rpm": "1,200", "burst": "40", "bulk_weight": "5",
             "flag": "ratelimit.v2.team.rpm_override", "raise_rule": "Support may double the "
             "limit for up to thirty days; permanent increases need the Business plan."},
            {"label": "Enterprise", "api": "v2", "rpm": "10,000", "burst": "300",
             "bulk_weight": "2", "flag": "ratelimit.v2.enterprise.rpm_override",
             "raise_rule": "Any limit can be agreed in the contract; the account's solutions "
             "engineer files the change."},
            {"label": "Business", "api": "v2", "rpm": "3,000", "burst": "100",
             "bulk_weight": "5", "flag": "ratelimit.v2.business.rpm_override",
             "raise_rule": "The account manager can raise the limit once a year without a "
             "contract change."},
        ],
    },
    {
        "slug": "data-export",
        "title": "Exporting your data: {label}",
        "ident": "E-{n}",
        "sections": [
            ("", [
                ("How account owners export all their data from {label}. The export contains "
                "projects, users, comments and attachments in {format}."),
            ]),
            ("Starting an export", [
                "Go to the administration settings and choose the export tab. {start_rule}",
            ]),
            ("Size and duration", [
                ("Exports are limited to {max_size}. Larger accounts are split into parts "
                "automatically. A typical account takes {duration}."),
            ]),
            ("Errors", [
                ("If the export stops with error {ident}, an attachment could not be read. "
                "The log lists the attachment; remove or re-upload it and start again. "
                "Related error: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["download everything from my account in {label}",
                           "{label}: take all my data out of the product"],
            "disambiguation": ["data export in {format}",
                               "export limited to {max_size}"],
            "section": ["{label} export failed because of an attachment, what now",
                        "{label} export stops partway through with an error"],
            "identifier": ["{ident}", "export error {ident}"],
        },
        "variants": [
            {"label": "version 4", "format": "a ZIP of CSV files", "max_size": "5 GB per file",
             "duration": "about an hour", "start_rule": "Only the account owner can start it; "
             "the link is emailed when it is ready."},
            {"label": "version 5", "format": "JSON Lines files with a manifest",
             "max_size": "50 GB per part", "duration": "ten to twenty minutes",
             "start_rule": "Owners and administrators can start it; the export can also be "
             "scheduled weekly."},
            {"label": "the self-hosted edition", "format": "a database dump plus the "
             "attachment directory", "max_size": "the free disk space of the server",
             "duration": "depends on the server", "start_rule": "Run the export command on "
             "the application server as the service user."},
            {"label": "version 5 with EU data residency", "format": "JSON Lines files "
             "with a manifest, stored in the EU bucket", "max_size": "20 GB per part",
             "duration": "twenty to forty minutes", "start_rule": "Owners can start it; the "
             "download link works only from the EU region endpoint."},
        ],
    },
    {
        "slug": "onboarding",
        "title": "First-week onboarding checklist: {label}",
        "ident": "ONB-{n}",
        "sections": [
            ("", [
                ("Welcome! This checklist is for new {label} joiners. Your buddy will go "
                "through it with you; tick items in task {ident}."),
            ]),
            ("Day one", [
                ("Collect your laptop, sign in, set up multi-factor authentication and join "
                "the team channels. {day_one}"),
            ]),
            ("Accounts to request", ["{accounts}"]),
            ("Training", [
                "Complete the security and privacy courses within two weeks. {training}",
            ]),
            ("End of the first week", [
                "Meet your manager to agree goals for the first ninety days. {end}",
                "Related checklist: {see_also}.",
            ]),
        ],
        "queries": {
            "paraphrase": ["what should a new {label} hire do in their first days",
                           "{label} new starter checklist"],
            "disambiguation": ["onboarding that includes {accounts_hint}",
                               "new joiner training: {training_hint}"],
            "section": ["what happens at the end of the first week for new {label} staff",
                        "{label} onboarding: goals meeting with manager"],
            "identifier": ["{ident}", "onboarding task {ident}"],
        },
        "variants": [
            {"label": "engineering", "day_one": "Clone the monorepo and run the setup "
             "script.", "accounts": "Source control, the CI system, the cloud console in "
             "read-only mode and the on-call scheduler.", "accounts_hint": "read-only cloud "
             "console access", "training": "Then shadow two on-call shifts.",
             "training_hint": "shadowing on-call shifts",
             "end": "Ship a small change to production with your buddy."},
            {"label": "sales", "day_one": "Book a call with your sales manager to get your "
             "territory.", "accounts": "The CRM, the quoting tool and the contract "
             "repository.", "accounts_hint": "a quoting tool account",
             "training": "Then complete product certification level one.",
             "training_hint": "product certification level one",
             "end": "Sit in on three customer calls."},
            {"label": "customer support", "day_one": "Get your headset and join the queue "
             "channel.", "accounts": "The helpdesk, the knowledge base editor and read "
             "access to customer accounts.", "accounts_hint": "knowledge base editor rights",
             "training": "Then complete tone-of-voice training.",
             "training_hint": "tone-of-voice training",
             "end": "Answer ten tickets with a reviewer."},
            {"label": "finance", "day_one": "Meet the controller and get a walkthrough of "
             "the month-end calendar.", "accounts": "The ERP system, the expense tool in "
             "approver mode and the banking portal with view rights.",
             "accounts_hint": "banking portal view rights",
             "training": "Then complete the anti-fraud and segregation of duties module.",
             "training_hint": "segregation of duties",
             "end": "Shadow one month-end close task."},
            {"label": "design", "day_one": "Get access to the design tool workspace and "
             "the component library.", "accounts": "The design tool, the research "
             "repository and the prototype hosting service.", "accounts_hint": "research "
             "repository access", "training": "Then complete the accessibility basics course.",
             "training_hint": "accessibility basics",
             "end": "Present a critique of one product flow to the team."},
        ],
    },
    {
        "slug": "vendor-review",
        "title": "Vendor security review: {label}",
        "ident": "SEC-{n}{s}",
        "sections": [
            ("", [
                ("Before buying software or services that handle {label}, the vendor must pass "
                "a security review. Start it early: reviews take {duration}."),
            ]),
            ("Questionnaire", [
                "Send the vendor questionnaire {ident}. {questionnaire}",
            ]),
            ("Approval", [
                "Security approves, rejects or approves with conditions. {approval}",
            ]),
            ("Renewal", [
                "Approved vendors are re-reviewed {renewal}. Related questionnaire: {see_also}.",
            ]),
        ],
        "queries": {
            "paraphrase": ["buying a tool that will process {label}: what security checks",
                           "security assessment of a supplier handling {label}"],
            "disambiguation": ["vendor review that takes {duration}",
                               "vendors re-reviewed {renewal}"],
            "section": ["how often is a vendor handling {label} reviewed again",
                        "re-review of approved suppliers for {label}"],
            "identifier": ["{ident}", "questionnaire {ident}"],
        },
        "variants": [
            {"label": "no personal data", "duration": "about one week", "questionnaire":
             "The short form is enough: ten questions.", "approval": "A security engineer "
             "can approve alone.", "renewal": "only when the contract changes"},
            {"label": "employee personal data", "duration": "two to three weeks",
             "questionnaire": "The full form, plus the data processing agreement.",
             "approval": "Needs a security engineer and the privacy officer.",
             "renewal": "every two years"},
            {"label": "customer personal data", "duration": "four to six weeks",
             "questionnaire": "The full form, a recent SOC 2 Type II report and a "
             "penetration test summary.", "approval": "Needs the security lead and the "
             "privacy officer; conditions are tracked until closed.",
             "renewal": "every year"},
            {"label": "payment card data", "duration": "six to eight weeks",
             "questionnaire": "The full form and a current PCI DSS attestation of "
             "compliance.", "approval": "Needs the CISO.", "renewal": "every year, with the "
             "attestation checked every quarter"},
            {"label": "access to our source code", "duration": "three to four weeks",
             "questionnaire": "The full form and a description of how the vendor's staff "
             "access repositories.", "approval": "Needs the security lead and the head of "
             "engineering.", "renewal": "every year and whenever the access scope changes"},
        ],
    },
    {
        "slug": "office-access",
        "title": "Office access and visitors: {label}",
        "ident": "FAC-{n}",
        "sections": [
            ("", [
                ("How to get into the {label} office ({address}), bring visitors and what to "
                "do out of hours."),
            ]),
            ("Badges", [
                "Badges are issued at reception on your first day. {badge_rule}",
            ]),
            ("Visitors", [
                "Register visitors the day before in the visitor system. {visitor_rule}",
            ]),
            ("Out of hours", [
                ("The building is open {hours}. Outside those hours, {after_hours} "
                "Report lost badges on form {ident}. Related: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["getting into the {label} office and bringing a guest",
                           "{label} office entry rules"],
            "disambiguation": ["office at {address}",
                               "building open {hours}"],
            "section": ["can I work late in the {label} office",
                        "{label} office at night, how do I get in"],
            "identifier": ["{ident}", "lost badge form {ident}"],
        },
        "variants": [
            {"label": "Berlin", "address": "Torstraße 140", "badge_rule": "Badges also open "
             "the bike cellar.", "visitor_rule": "Visitors sign the NDA on the tablet.",
             "hours": "from 7 am to 9 pm on weekdays", "after_hours": "call the security "
             "desk, which can let you in remotely."},
            {"label": "London", "address": "Clerkenwell Road 55", "badge_rule": "Badges are "
             "shared with other tenants' turnstiles.", "visitor_rule": "Visitors need photo "
             "identification at the building lobby.", "hours": "around the clock",
             "after_hours": "nothing special is needed, but sign in at the night desk."},
            {"label": "Austin", "address": "East 6th Street 801", "badge_rule": "Badges "
             "expire after 90 days without use.", "visitor_rule": "Visitors under 18 must be "
             "accompanied at all times.", "hours": "from 6 am to 10 pm every day",
             "after_hours": "the office is closed; ask Facilities for an exception."},
            {"label": "Bengaluru", "address": "Indiranagar 100 Feet Road",
             "badge_rule": "Badges include a photo and are checked by guards.",
             "visitor_rule": "Visitors leave laptops' serial numbers at the gate.",
             "hours": "from 8 am to 8 pm on weekdays", "after_hours": "the late-shift cab "
             "must be booked by 4 pm."},
            {"label": "Warsaw", "address": "Prosta 20", "badge_rule": "Badges are "
             "activated only after the health and safety briefing.", "visitor_rule":
             "Visitors are collected from the ground-floor reception.",
             "hours": "from 7 am to 11 pm on weekdays", "after_hours": "the building "
             "manager must be told by email in advance."},
        ],
    },
]
