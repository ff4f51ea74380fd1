"""A small hand-written knowledge base for the retrieval tests."""

from __future__ import annotations

from llmgateway.v1 import retrieval_pb2 as pb

DOCS: dict[str, tuple[str, str, dict[str, str]]] = {
    "err-e4021": ("Error E4021", "Error E4021 means the upload quota of the account was "
                  "exceeded. Delete old files or ask an administrator for a larger quota "
                  "before uploading again.", {"kind": "error", "team": "storage"}),
    "err-e4022": ("Error E4022", "Error E4022 means the uploaded file type is not allowed. "
                  "Only images and PDF documents may be attached to a ticket.",
                  {"kind": "error", "team": "storage"}),
    "err-e4023": ("Error E4023", "Error E4023 means the upload checksum did not match, "
                  "usually because the connection dropped while the file was sent. Retry "
                  "the upload.", {"kind": "error", "team": "network"}),
    "err-e4024": ("Error E4024", "Error E4024 means the upload was rejected because the "
                  "file is larger than 50 MB. Compress it or split it.",
                  {"kind": "error", "team": "storage"}),
    "err-e4025": ("Error E4025", "Error E4025 means the upload link expired. Request a fresh "
                  "upload link and try again.", {"kind": "error", "team": "network"}),
    "gather": ("Concurrent tasks", "asyncio.gather schedules several coroutines at once "
               "and returns their results, in order, once every one of them has finished.",
               {"kind": "guide", "team": "python"}),
    "password": ("Account recovery", "If you forgot your login credentials, open the sign-in "
                 "page, choose 'Forgot password' and follow the e-mailed link to set a new one.",
                 {"kind": "guide", "team": "accounts"}),
    "invoice": ("Invoices", "Invoices are issued on the first day of each month and list "
                "every charge of the previous month with its tax.",
                {"kind": "guide", "team": "billing"}),
    "kitten": ("Pets", "A young cat sleeps most of the day; kittens need warm, quiet places "
               "to nap and should be fed small meals several times a day.",
               {"kind": "guide", "team": "pets"}),
}


def documents(ids: list[str] | None = None, prefix: str = "") -> list[pb.Document]:
    out = []
    for doc_id in ids or list(DOCS):
        title, text, meta = DOCS[doc_id]
        document = pb.Document(id=doc_id, title=prefix + title, source=f"kb://{doc_id}",
                               text=text)
        document.metadata.update(meta)
        out.append(document)
    return out
