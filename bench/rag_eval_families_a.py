"""Hand-written parts of the retrieval evaluation corpus: company policy pages.

Each family is one topic written once (headings, paragraphs, query templates) plus its
variants: near-identical pages that differ in the details a reader actually cares about
(region, year, tier, version). ``{field}`` slots are filled from the variant; ``{ident}``
is the variant's opaque identifier (a form number, error code, flag or ticket id) and
``{see_also}`` the next variant's identifier. The overview is the only part that names
the variant: the later sections read like the rest of a real page, so a question about
them only makes sense together with the title.
"""

from __future__ import annotations

from typing import Any

Family = dict[str, Any]

POLICIES: list[Family] = [
    {
        "slug": "parental-leave",
        "title": "Parental leave policy: {label}",
        "ident": "HR-{n}{s}",
        "sections": [
            ("", [
                ("This page describes paid and unpaid parental leave for employees whose "
                "employment contract is held by our {label} entity ({entity}). It applies to "
                "birth parents, partners and adoptive parents alike."),
                ("Employees on a fixed-term contract are covered from their first day; "
                "contractors engaged through an agency are not."),
            ]),
            ("Entitlement", [
                ("The primary caregiver receives {weeks} weeks of leave at full base pay. The "
                "second parent receives {partner_weeks} weeks at full base pay, which can be "
                "taken in up to three blocks within the first year."),
                ("Statutory benefits paid by the state are deducted from the top-up, so the "
                "total never exceeds one hundred percent of base salary."),
            ]),
            ("How to apply", [
                ("Submit form {ident} in the HR portal at least {notice} days before the "
                "planned start date. Attach the expected due date or the placement letter "
                "from the adoption agency."),
                ("Your manager is informed automatically once the form is accepted; you do not "
                "need to send them a copy. Approval is given by {approver}."),
            ]),
            ("Returning to work", [
                ("Returning parents may work {return_pct} percent of their contracted hours "
                "for the first {return_weeks} weeks on full pay. Book a conversation with "
                "your manager two weeks before the return date to agree on the schedule."),
                "Bonus eligibility is calculated as if you had worked through the leave.",
            ]),
            ("Questions", [
                ("Payroll questions go to {payroll_contact}. For anything about benefits "
                "continuation during leave, such as pension contributions or health cover, "
                "see the benefits handbook."),
                "Related form: {see_also} (the same request for another entity).",
            ]),
        ],
        "queries": {
            "paraphrase": ["how long can a new mum or dad stay home on full salary in {label}",
                           "{label}: paid time off after having or adopting a baby"],
            "disambiguation": ["parental leave for staff contracted through {entity}",
                               "baby leave rules for the entity {entity}"],
            "section": [("{label} parental leave: how many hours can I work when I come back "
                        "and for how long"),
                        "coming back from parental leave in {label}, reduced hours on full pay?"],
            "identifier": ["{ident}", "where do I submit form {ident}"],
        },
        "variants": [
            {"label": "Germany", "entity": "Larkspur GmbH", "weeks": "14", "partner_weeks": "6",
             "notice": "49", "approver": "the People Partner for your department",
             "return_pct": "60", "return_weeks": "8", "payroll_contact": "payroll-de@larkspur.example"},
            {"label": "United States", "entity": "Larkspur Inc.", "weeks": "16",
             "partner_weeks": "8", "notice": "30", "approver": "the HR Service Center",
             "return_pct": "50", "return_weeks": "4", "payroll_contact": "the US payroll desk"},
            {"label": "India", "entity": "Larkspur Technologies Pvt Ltd", "weeks": "26",
             "partner_weeks": "4", "notice": "56", "approver": "the site HR lead in Pune",
             "return_pct": "75", "return_weeks": "6", "payroll_contact": "payroll-in@larkspur.example"},
            {"label": "Brazil", "entity": "Larkspur Brasil Ltda", "weeks": "20",
             "partner_weeks": "20", "notice": "30", "approver": "the People Partner in São Paulo",
             "return_pct": "50", "return_weeks": "10", "payroll_contact": "folha@larkspur.example"},
            {"label": "United Kingdom", "entity": "Larkspur UK Limited", "weeks": "18",
             "partner_weeks": "4", "notice": "105", "approver": "the HR Service Center in Leeds",
             "return_pct": "80", "return_weeks": "4", "payroll_contact": "the UK payroll team"},
        ],
    },
    {
        "slug": "travel-expenses",
        "title": "Travel and expense policy ({label})",
        "ident": "FIN-{n}",
        "sections": [
            ("", [
                ("This is the {label} version of the travel and expense policy, effective "
                "{effective}. It replaces earlier versions for every trip booked on or after "
                "that date; trips booked before it follow the version in force at booking."),
                ("The policy covers flights, trains, hotels, meals, taxis and client "
                "entertainment. Conferences have their own approval flow."),
            ]),
            ("Booking", [
                ("Book through the travel portal whenever possible. Economy class is the "
                "default; {flight_rule}."),
                ("Hotels are capped at {hotel_cap} per night in most cities, with the listed "
                "exceptions for high-cost locations approved by the finance controller."),
            ]),
            ("Meals and per diem", [
                ("The daily meal allowance is {per_diem}. Alcohol is not reimbursed unless it "
                "is part of approved client entertainment."),
                ("Receipts are required for every item above {receipt_min}; below that amount "
                "a note in the claim is enough."),
            ]),
            ("Submitting a claim", [
                ("Claims are filed with form {ident} within {claim_days} days of returning. "
                "Late claims need a written justification and are approved only by the "
                "budget owner's director."),
                ("Reimbursement is paid with the next payroll run after approval. Corporate "
                "card statements must be reconciled {reconcile}."),
            ]),
            ("Changes from the previous version", [
                "{changes}",
                "Previous version of this page: see {see_also}.",
            ]),
        ],
        "queries": {
            "paraphrase": ["{label} expenses: how much can I spend on food per day on a business trip",
                           "daily food allowance when travelling for work, {label} policy"],
            "disambiguation": ["expense rules for trips booked after {effective}",
                               "travel policy that took effect {effective}"],
            "section": [("what changed in the {label} travel and expense policy compared with "
                        "the one before"),
                        "{label} expense policy: deadline for filing a claim after a trip"],
            "identifier": ["{ident} claim form", "{ident}"],
        },
        "variants": [
            {"label": "2021", "effective": "1 March 2021", "flight_rule": "business class is "
             "never reimbursed", "hotel_cap": "EUR 150", "per_diem": "EUR 40",
             "receipt_min": "EUR 10", "claim_days": "60", "reconcile": "quarterly",
             "changes": "The 2021 version introduced the travel portal and removed paper "
             "claims entirely."},
            {"label": "2023", "effective": "1 January 2023", "flight_rule": "business class is "
             "allowed for flights longer than nine hours", "hotel_cap": "EUR 170",
             "per_diem": "EUR 45", "receipt_min": "EUR 15", "claim_days": "45",
             "reconcile": "monthly", "changes": "The 2023 version raised the hotel cap, "
             "allowed business class on very long flights and shortened the claim deadline."},
            {"label": "2024", "effective": "1 April 2024", "flight_rule": "premium economy is "
             "allowed for flights longer than six hours", "hotel_cap": "EUR 180",
             "per_diem": "EUR 50", "receipt_min": "EUR 25", "claim_days": "30",
             "reconcile": "monthly", "changes": "The 2024 version replaced business class with "
             "premium economy, and made rail mandatory for journeys under four hours."},
            {"label": "2025", "effective": "15 February 2025", "flight_rule": "premium economy "
             "is allowed for flights longer than seven hours", "hotel_cap": "EUR 190",
             "per_diem": "EUR 55", "receipt_min": "EUR 25", "claim_days": "30",
             "reconcile": "within ten working days of the statement date",
             "changes": "The 2025 version moved the per diem to EUR 55, tightened corporate "
             "card reconciliation and added carbon reporting for every flight."},
        ],
    },
    {
        "slug": "home-office",
        "title": "Home office equipment allowance: {label}",
        "ident": "HR-{n}{s}",
        "sections": [
            ("", [
                ("Employees in {label} who work from home at least two days a week can claim a "
                "one-off allowance for desk, chair, monitor and lighting, plus a monthly "
                "contribution to internet costs."),
                ("Equipment bought with the allowance belongs to you; laptops and phones are "
                "not covered because IT issues them."),
            ]),
            ("Amounts", [
                ("The one-off allowance is {one_off}, paid in {currency_hint}. The monthly internet contribution is "
                "{monthly}, paid through payroll {tax_note}."),
                ("Part-time employees receive the full one-off amount and a pro-rated monthly "
                "contribution."),
            ]),
            ("Claiming", [
                ("Use form {ident} and attach itemised receipts. Claims are accepted up to "
                "{claim_months} months after your start date or after a change to a hybrid "
                "contract."),
                "If you leave within a year, nothing has to be paid back.",
            ]),
            ("Ergonomics check", [
                ("A free ergonomic assessment is available by video call. It is mandatory "
                "{ergo_rule}. The assessor can recommend a specific chair, and that "
                "recommendation raises the chair budget by {ergo_extra}."),
            ]),
            ("Contacts", [
                ("Questions about amounts go to your local HR team; technical questions about "
                "monitors and docking stations go to the IT help desk. Related: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["{label}: money for a desk and chair when working from home",
                           "reimbursement for setting up a home workspace in {label}"],
            "disambiguation": ["home office allowance paid in {currency_hint}",
                               "work from home budget of {one_off}"],
            "section": ["is the ergonomic assessment compulsory for {label} home workers",
                        "{label} home office: extra chair budget after an ergonomics review"],
            "identifier": ["form {ident}", "{ident} receipts"],
        },
        "variants": [
            {"label": "United Kingdom", "one_off": "GBP 400", "monthly": "GBP 25",
             "currency_hint": "pounds sterling", "tax_note": "tax-free up to the HMRC limit",
             "claim_months": "3", "ergo_rule": "for anyone working from home four or more days",
             "ergo_extra": "GBP 150"},
            {"label": "United States", "one_off": "USD 500", "monthly": "USD 40",
             "currency_hint": "US dollars", "tax_note": "as taxable income",
             "claim_months": "6", "ergo_rule": "only when requested by the employee",
             "ergo_extra": "USD 200"},
            {"label": "Canada", "one_off": "CAD 600", "monthly": "CAD 45",
             "currency_hint": "Canadian dollars", "tax_note": "as a taxable benefit",
             "claim_months": "6", "ergo_rule": "for every fully remote employee",
             "ergo_extra": "CAD 250"},
            {"label": "Poland", "one_off": "PLN 1,800", "monthly": "PLN 120",
             "currency_hint": "złoty", "tax_note": "as the statutory remote-work lump sum",
             "claim_months": "2", "ergo_rule": "before the first remote day, by Polish law",
             "ergo_extra": "PLN 600"},
        ],
    },
    {
        "slug": "sick-leave",
        "title": "Sick leave and medical certificates: {label}",
        "ident": "HR-{n}{s}",
        "sections": [
            ("", [
                ("How to report sickness and what pay to expect if you are employed in "
                "{label}. Your health comes first: nobody should log in while ill."),
            ]),
            ("Reporting an absence", [
                ("Tell your manager before your usual start time on the first day, by phone or "
                "chat. Record the absence in the HR portal the same day."),
                "A medical certificate is needed from day {cert_day} of an absence. {cert_rule}",
            ]),
            ("Pay during sickness", [
                ("You receive full pay for the first {full_pay} of sickness in any rolling "
                "twelve months. After that, {after_pay}."),
            ]),
            ("Long-term absence", [
                ("After {long_term} weeks the occupational health service contacts you to plan a "
                "gradual return. The plan is recorded on form {ident} and reviewed every four "
                "weeks with your manager."),
                ("Holidays continue to accrue during sickness and can be carried over into the "
                "next year."),
            ]),
            ("Caring for others", [
                ("Looking after a sick child or relative is not your own sickness. You have "
                "{carer_days} paid carer days a year; beyond them, use holiday or unpaid leave. "
                "See also {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["{label}: do I get paid when I am off ill and for how long",
                           "salary while unwell, {label} employees"],
            "disambiguation": ["sick note needed from day {cert_day}",
                               "sickness rules where a doctor's note is required on day {cert_day}"],
            "section": ["{label} sick leave: paid days for looking after an ill child",
                        "how many carer days do I get in {label} if my kid is sick"],
            "identifier": ["{ident}", "return to work plan form {ident}"],
        },
        "variants": [
            {"label": "Germany", "cert_day": "4", "cert_rule": "Doctors send it electronically "
             "to the health insurer; you only confirm in the portal.", "full_pay": "six weeks",
             "after_pay": "the statutory health insurer pays sickness benefit",
             "long_term": "6", "carer_days": "10"},
            {"label": "Netherlands", "cert_day": "8", "cert_rule": "The company doctor, not "
             "your GP, assesses longer absences.", "full_pay": "52 weeks",
             "after_pay": "70 percent of salary is paid in the second year", "long_term": "6",
             "carer_days": "8"},
            {"label": "United States", "cert_day": "3", "cert_rule": "A note from any licensed "
             "provider is accepted; upload it to the portal.", "full_pay": "ten working days",
             "after_pay": "short-term disability insurance applies after a seven-day wait",
             "long_term": "4", "carer_days": "5"},
            {"label": "India", "cert_day": "2", "cert_rule": "Upload a scan of a registered "
             "medical practitioner's certificate.", "full_pay": "twelve working days",
             "after_pay": "leave is unpaid unless covered by the group medical policy",
             "long_term": "3", "carer_days": "6"},
            {"label": "United Kingdom", "cert_day": "8", "cert_rule": "For the first seven "
             "days you self-certify in the portal; after that a fit note from your GP is "
             "needed.", "full_pay": "eight weeks", "after_pay": "statutory sick pay applies "
             "for up to 28 weeks", "long_term": "4", "carer_days": "5"},
        ],
    },
    {
        "slug": "on-call-pay",
        "title": "On-call compensation: {label}",
        "ident": "HR-{n}{s}",
        "sections": [
            ("", [
                ("This page sets out what engineers on the {label} rotation receive for being "
                "on call and for incidents handled outside working hours. It was agreed with "
                "the works council and reviewed in {reviewed}."),
            ]),
            ("Standby allowance", [
                ("A full week of standby pays {weekly}. Partial weeks are paid per day at one "
                "seventh of that amount. Public holidays count double."),
                ("Standby only counts when you are reachable within {reach} minutes and able "
                "to work; shadow shifts for newcomers are paid at half rate."),
            ]),
            ("Time worked during incidents", [
                ("Time spent handling a page outside working hours is paid at {incident_rate} "
                "or taken as time off in lieu, your choice, recorded on form {ident}."),
                "{rest_rule}",
            ]),
            ("Limits", [
                ("Nobody is on call for more than {max_weeks} weeks in any eight-week period. "
                "Swaps are arranged in the scheduling tool and need no approval if the "
                "replacement has completed the onboarding shadow shifts."),
            ]),
            ("Related", ["Compare the compensation for the neighbouring rotation: {see_also}."]),
        ],
        "queries": {
            "paraphrase": ["what extra money do I get for carrying the pager on the {label} rotation",
                           "{label} rotation: payment for a week of standby"],
            "disambiguation": ["on-call pay where standby is {weekly} per week",
                               "rotation where you must respond within {reach} minutes"],
            "section": ["{label} on-call: maximum number of weeks on call in eight weeks",
                        "how often can someone be scheduled on call on the {label} team"],
            "identifier": ["{ident}", "time off in lieu form {ident}"],
        },
        "variants": [
            {"label": "Platform", "reviewed": "March 2024", "weekly": "EUR 420", "reach": "15",
             "incident_rate": "150 percent of the hourly rate", "max_weeks": "2",
             "rest_rule": "After a page that lasts past 2 am you start the next day no earlier "
             "than 11 am."},
            {"label": "Payments", "reviewed": "October 2024", "weekly": "EUR 560", "reach": "5",
             "incident_rate": "200 percent of the hourly rate", "max_weeks": "2",
             "rest_rule": "Eleven hours of rest follow any incident work; the next shift moves."},
            {"label": "Customer Support tooling", "reviewed": "June 2023", "weekly": "EUR 250",
             "reach": "30", "incident_rate": "125 percent of the hourly rate", "max_weeks": "3",
             "rest_rule": "Incident work after midnight makes the next morning free."},
            {"label": "Data Platform", "reviewed": "January 2025", "weekly": "EUR 380",
             "reach": "20", "incident_rate": "150 percent of the hourly rate", "max_weeks": "2",
             "rest_rule": "Batch pipeline pages between 1 am and 6 am can be deferred to the "
             "morning unless the finance close is running."},
            {"label": "Security Operations", "reviewed": "May 2025", "weekly": "EUR 610",
             "reach": "10", "incident_rate": "200 percent of the hourly rate", "max_weeks": "1",
             "rest_rule": "Analysts hand over to the follow-the-sun team in Sydney after four "
             "hours of night work."},
        ],
    },
    {
        "slug": "data-retention",
        "title": "Data retention schedule: {label}",
        "ident": "`{flag}`",
        "sections": [
            ("", [
                ("How long we keep {label}, where it is stored and how it is deleted. Legal and "
                "Privacy own this schedule; engineering owns the deletion jobs."),
            ]),
            ("Retention period", [
                "{label} are kept for {period}. The period starts {start}.",
                ("A legal hold suspends deletion for the records it names; the Privacy team "
                "lifts holds, never the data owner."),
            ]),
            ("Storage", [
                ("Records live in {store}. Copies in backups expire with the backup cycle, at "
                "most 35 days after the primary copy is deleted."),
            ]),
            ("Deletion job", [
                ("Deletion runs nightly and is controlled by the configuration flag {ident}. "
                "Setting the flag to false pauses deletion everywhere; do that only with a "
                "ticket from Legal, because paused deletion is itself a compliance finding."),
                ("The job writes a daily count of deleted records to the audit dashboard. "
                "{job_note}"),
            ]),
            ("Access requests", [
                ("Customers and employees may ask for a copy or for erasure. Erasure requests "
                "are answered within {dsr_days} days. Related flag: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["how long do we hold on to {label} before throwing them away",
                           "when are {label} purged"],
            "disambiguation": ["retention of records stored in {store}",
                               "data kept for {period}"],
            "section": ["{label}: who can pause the nightly deletion and how",
                        "{label} retention: deadline to answer an erasure request"],
            "identifier": ["{ident}", "what happens if {ident} is set to false"],
        },
        "variants": [
            {"label": "application logs", "flag": "retention.applogs.delete_enabled",
             "period": "30 days", "start": "when the log line is written",
             "store": "the log cluster in each region", "dsr_days": "30",
             "job_note": "A drop of more than half from one day to the next pages the "
             "observability on-call."},
            {"label": "support tickets", "flag": "retention.tickets.delete_enabled",
             "period": "three years", "start": "when the ticket is closed",
             "store": "the helpdesk SaaS and its nightly export bucket", "dsr_days": "30",
             "job_note": "Attachments are deleted one week before the ticket text."},
            {"label": "payroll records", "flag": "retention.payroll.delete_enabled",
             "period": "ten years", "start": "at the end of the tax year",
             "store": "the HR system and the finance archive", "dsr_days": "45",
             "job_note": "Records of former employees are anonymised instead of deleted "
             "where tax law allows."},
            {"label": "office CCTV recordings", "flag": "retention.cctv.delete_enabled",
             "period": "72 hours", "start": "when the recording is made",
             "store": "the on-site video recorder in each office", "dsr_days": "14",
             "job_note": "Recordings flagged by Facilities for an incident are exported "
             "before the window closes."},
            {"label": "call recordings from the sales team", "flag": "retention.calls.delete_enabled",
             "period": "18 months", "start": "from the date of the call",
             "store": "the telephony vendor's EU region", "dsr_days": "30",
             "job_note": "Recordings used for training are re-consented every year."},
        ],
    },
    {
        "slug": "laptop-security",
        "title": "Laptop security baseline: {label}",
        "ident": "E-{n}",
        "sections": [
            ("", [
                ("The minimum configuration every company {label} laptop must meet before it "
                "can reach internal systems. Devices are checked at every login by the device "
                "trust agent ({agent})."),
            ]),
            ("Required settings", [
                ("Full-disk encryption with {encryption}, a screen lock after {lock} minutes and "
                "automatic updates. The operating system must be no older than {min_os}."),
                ("Local administrator rights are removed after enrolment; request temporary "
                "elevation in the self-service tool when you install developer tools."),
            ]),
            ("When the check fails", [
                ("A failed check blocks single sign-on and shows error {ident}. The message "
                "names the failing setting. Most failures are fixed by installing pending "
                "updates and restarting."),
                ("If the check still fails after a restart, open a ticket with the IT help "
                "desk and include the device serial number."),
            ]),
            ("Lost or stolen devices", [
                ("Report a lost device within {report_hours} hours. IT wipes it remotely and "
                "revokes its certificates; a replacement is shipped within three working days."),
            ]),
            ("Exceptions", [
                ("Lab and test machines that cannot meet the baseline live on the isolated lab "
                "network and never receive production credentials. Related error: {see_also}."),
            ]),
        ],
        "queries": {
            "paraphrase": ["what does my {label} laptop need before it can get on the corporate network",
                           "{label} machine requirements for single sign-on"],
            "disambiguation": ["device check that requires {encryption}",
                               "laptops that must run at least {min_os}"],
            "section": ["I lost my {label} laptop, how quickly must I report it",
                        "{label} laptop stolen: what does IT do"],
            "identifier": ["{ident}", "sign-on blocked with error {ident}"],
        },
        "variants": [
            {"label": "macOS", "agent": "installed through the MDM profile",
             "encryption": "FileVault", "lock": "5", "min_os": "macOS 14 Sonoma",
             "report_hours": "24"},
            {"label": "Windows", "agent": "part of the Intune enrolment",
             "encryption": "BitLocker and a TPM-protected key", "lock": "10",
             "min_os": "Windows 11 23H2", "report_hours": "24"},
            {"label": "Linux", "agent": "the osquery-based agent installed by the setup script",
             "encryption": "LUKS2 full-disk encryption", "lock": "10",
             "min_os": "Ubuntu 22.04 LTS", "report_hours": "12"},
            {"label": "Chromebook", "agent": "enforced by the Chrome Enterprise policy",
             "encryption": "the built-in verified-boot encryption", "lock": "5",
             "min_os": "ChromeOS LTS channel 120", "report_hours": "48"},
        ],
    },
    {
        "slug": "gifts",
        "title": "Gifts and hospitality rules: {label}",
        "ident": "CMP-{n}",
        "sections": [
            ("", [
                ("Rules for accepting and giving gifts, meals and event invitations for "
                "{label}. The aim is simple: no decision of ours should ever look bought."),
            ]),
            ("Accepting", [
                ("You may accept gifts worth up to {limit} per giver per year without "
                "approval. Anything above that is declared on form {ident} within five "
                "working days, even if you decline it."),
                "{extra_rule}",
            ]),
            ("Giving", [
                ("Gifts to customers need the approval of {approver} above {give_limit}. Gifts "
                "to public officials are never allowed, whatever their value."),
            ]),
            ("The register", [
                ("Compliance keeps the register of declared gifts and reviews it {review}. The "
                "register is open to internal audit and the board's audit committee."),
            ]),
            ("Related", ["See also {see_also} for the other group's declaration form."]),
        ],
        "queries": {
            "paraphrase": ["{label}: can I keep a present from a supplier",
                           "is it ok for {label} to accept a gift from a vendor"],
            "disambiguation": ["gift rules with a limit of {limit}",
                               "gift policy where giving above {give_limit} needs approval"],
            "section": ["how often is the gift register reviewed for {label}",
                        "{label} gifts: who reviews declared gifts and how often"],
            "identifier": ["{ident}", "declare a gift on {ident}"],
        },
        "variants": [
            {"label": "sales staff", "limit": "EUR 100", "give_limit": "EUR 150",
             "approver": "the regional sales director", "review": "quarterly",
             "extra_rule": "Event tickets count at face value, including the plus-one."},
            {"label": "procurement staff", "limit": "EUR 25", "give_limit": "EUR 50",
             "approver": "the Chief Procurement Officer", "review": "monthly",
             "extra_rule": "During an open tender you accept nothing at all from bidders."},
            {"label": "all other employees", "limit": "EUR 50", "give_limit": "EUR 100",
             "approver": "your department head", "review": "twice a year",
             "extra_rule": "Meals at conferences that are open to all attendees are fine."},
            {"label": "executives and board members", "limit": "EUR 75", "give_limit": "EUR 250",
             "approver": "the General Counsel", "review": "at every audit committee meeting",
             "extra_rule": "Every invitation is declared, accepted or not."},
        ],
    },
]


# Sections every page of a group carries, as real wikis do (a scope note, general rules).
# Each page takes one paragraph from each list, picked by a hash of the page id, so pages
# of a family share some of this text and differ in some. It also makes pages long enough
# that their later sections land in the second or third chunk.
GROUP_SECTIONS: dict[str, list[tuple[str, list[str]]]] = {
    "policy": [
        ("Scope and definitions", [
            ("In this policy, 'employee' means anyone on a permanent or fixed-term contract "
            "with the entity named above. Interns are included unless a section says "
            "otherwise. Temporary workers supplied by an agency follow their agency's rules, "
            "and freelancers follow their service agreement."),
            ("The policy applies to everyone employed by the entity named above, regardless "
            "of team or seniority. Where local law is more generous than this page, local "
            "law wins; where this page is more generous, this page applies."),
            ("These rules apply from the first day of employment. Where a works council or a "
            "collective agreement exists, the agreement prevails in case of conflict, and HR "
            "will point out the differences on request."),
        ]),
        ("Principles", [
            ("We want rules that are simple to follow and fair across countries. When a case "
            "is not covered, managers decide in the spirit of the policy and record the "
            "decision, so that similar cases are treated the same way next time."),
            ("Managers may not add conditions that are not written here. If something seems "
            "unclear, ask HR before acting rather than interpreting it alone; the answer "
            "will be added to this page for everyone."),
            ("Exceptions are possible but rare. They are approved in writing, limited in time "
            "and reviewed by HR every quarter so that exceptions do not quietly become the "
            "rule."),
        ]),
    ],
    "runbook": [
        ("General rules during incidents", [
            ("Announce in the incident channel what you are about to do before you do it, "
            "and write down the time of every action. If you are unsure whether a step is "
            "safe, stop and ask: a few minutes of discussion are cheaper than a second "
            "incident."),
            ("Always work from a fresh terminal on the bastion host, never from a laptop "
            "session that may have stale credentials. Keep the incident commander informed "
            "at least every fifteen minutes, even when there is nothing new to say."),
            ("The on-call engineer owns the technical response; the incident commander owns "
            "communication and decisions about customer impact. Hand over explicitly when "
            "you go off shift, in writing, with the current state and next steps."),
        ]),
        ("Access you need", [
            ("Production access is granted through just-in-time elevation for four hours. "
            "Request it before you need it: approval by a second engineer can take a few "
            "minutes at night."),
            ("You need the production role in the cloud console, read access to the "
            "dashboards and the ability to post in the status channel. If any of these is "
            "missing, ask the incident commander to act on your behalf."),
            ("Break-glass credentials exist for the case where single sign-on itself is "
            "down. Using them pages Security automatically, which is expected: explain the "
            "reason in the incident channel."),
        ]),
    ],
    "postmortem": [
        ("How we write postmortems", [
            ("Postmortems are written within five working days of an incident by the "
            "incident commander, reviewed by the teams involved and published to the whole "
            "company. Names of individuals are left out on purpose."),
            ("A postmortem describes impact, timeline, causes and actions. Actions have an "
            "owner and a due date, and they are tracked in the reliability board until they "
            "are closed or consciously dropped with a reason."),
            ("We write a postmortem for every incident of severity two or higher, and for "
            "near misses that could have been. The point is learning, so contributing "
            "factors matter as much as the trigger."),
        ]),
        ("Severity", [
            ("Severity one means a complete outage of a customer-facing function or data "
            "loss; severity two a partial outage or serious degradation; severity three a "
            "minor issue with a workaround."),
            ("Severity is set by the incident commander during the incident and may be "
            "revised in the review. Customer impact, duration and the number of affected "
            "regions all count."),
            ("Any incident that touched payments or personal data is treated as at least "
            "severity two, whatever its size, because of the reporting duties that may "
            "follow."),
        ]),
    ],
    "product": [
        ("Who this applies to", [
            ("This page describes the standard terms. Customers with a negotiated contract "
            "should check their order form first: where it differs from this page, the "
            "order form applies."),
            ("The terms here are the ones published on the public pricing page. Sales may not "
            "promise anything beyond them without an approved deal desk exception."),
            ("Trial accounts get the terms of the plan they are trialling, except where a "
            "section says otherwise. Partners reselling the product pass these terms on to "
            "their customers unchanged."),
        ]),
        ("Changes to these terms", [
            ("We announce changes thirty days in advance by email to account owners and in "
            "the changelog. Changes that reduce what customers get apply only at the next "
            "renewal."),
            ("The history of this page is kept in the documentation repository, and every "
            "change links to the decision behind it, so customer-facing teams can explain "
            "why something changed."),
            ("Product management owns these terms together with Legal. Questions from "
            "customers go through their account manager or the support portal."),
        ]),
    ],
}
