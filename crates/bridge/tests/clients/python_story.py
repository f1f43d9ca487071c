"""Bob's mail client in Python (imaplib, smtplib): reads alice's letter
over IMAP with STARTTLS, answers it in its thread and starts a new one over
SMTP submission, and tries what the bridge must refuse. Prints one JSON
object; the Rust test (mail_clients.rs) judges it."""
import email
import email.utils
import imaplib
import json
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage

imap_port, smtp_port, cert, user, password, alice = sys.argv[1:]
ctx = ssl.create_default_context(cafile=cert)
out = {}

imap = imaplib.IMAP4("127.0.0.1", int(imap_port))
try:
    imap.login(user, password)
    out["login_before_tls"] = "accepted"
except imaplib.IMAP4.error as e:
    out["login_before_tls"] = str(e)
imap.starttls(ssl_context=ctx)
imap.login(user, password)
for _ in range(150):
    typ, data = imap.select("INBOX")
    if int(data[0]) >= 1:
        break
    time.sleep(0.2)
typ, data = imap.uid("SEARCH", None, "ALL")
uid = data[0].split()[0]
typ, data = imap.uid("FETCH", uid, "(RFC822)")
original = email.message_from_bytes(data[0][1])
out["subject"] = str(email.header.make_header(email.header.decode_header(original["Subject"])))
out["body"] = original.get_payload(decode=True).decode()
typ, data = imap.list()
out["folders"] = [line.decode() for line in data]
imap.logout()

smtp = smtplib.SMTP("127.0.0.1", int(smtp_port))
code, _ = smtp.docmd("AUTH", "PLAIN AGJvYgBib2I=")
out["auth_before_tls"] = code
smtp.starttls(context=ctx)
smtp.ehlo()
out["ehlo"] = sorted(smtp.esmtp_features.keys())

try:
    smtp.login(user, "0123456789abcdef0123456789abcdef")
except smtplib.SMTPAuthenticationError as e:
    out["wrong_password"] = e.smtp_code
smtp.user, smtp.password = user, password
code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
out["auth_login"] = code

reply = EmailMessage()
reply["From"] = user
reply["To"] = alice
reply["Subject"] = "Re: " + out["subject"]
reply["In-Reply-To"] = original["Message-ID"]
reply["Message-ID"] = email.utils.make_msgid(domain="client.example")
reply.set_content("Confirmed from a mail client.")
out["reply_refused"] = smtp.send_message(reply)

fresh = EmailMessage()
fresh["From"] = user
fresh["To"] = alice
fresh["Subject"] = "A new thread from Python"
fresh.set_content("Written in a mail client.")
out["fresh_refused"] = smtp.send_message(fresh)


def refused(sender, recipients, message):
    try:
        smtp.sendmail(sender, recipients, message.as_bytes())
        return "accepted"
    except smtplib.SMTPSenderRefused as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return [c for c, _ in e.recipients.values()]
    except smtplib.SMTPDataError as e:
        return e.smtp_code


out["foreign_sender"] = refused("mallory@mfa.example", [alice], fresh)
out["not_an_address"] = refused(user, ["nobody"], fresh)
out["bcc"] = refused(user, [alice, "carol@mfa.example"], fresh)
ghost = EmailMessage()
ghost["From"] = user
ghost["To"] = "ghost@mfa.example"
ghost["Subject"] = "To nobody"
ghost.set_content("Nobody reads this.")
out["unknown_user"] = refused(user, ["ghost@mfa.example"], ghost)
smtp.quit()

# The client files its copy in Sent: the letter is there already.
imap = imaplib.IMAP4("127.0.0.1", int(imap_port))
imap.starttls(ssl_context=ctx)
imap.login(user, password)
typ, data = imap.append("Sent", None, None, reply.as_bytes())
out["append_sent"] = [typ, data[0].decode()]
typ, data = imap.append("Sent", None, None, fresh.as_bytes())
out["append_unknown"] = [typ, data[0].decode()]
typ, data = imap.status("Sent", "(MESSAGES)")
out["sent_status"] = data[0].decode()
imap.logout()
print(json.dumps(out))
