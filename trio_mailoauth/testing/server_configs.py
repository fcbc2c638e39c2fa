"""Configuration files of the private Dovecot and Postfix that :mod:`.servers` runs.

Pure text rendering: no I/O, so a reader sees every setting in one place. Settings differing
from stock say why in a comment (the generated files carry these comments too, which helps when
someone opens BASEDIR/etc/dovecot.conf to debug a test).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from trio_mailoauth.testing.oauth_model import (
    DEFAULT_SCOPE,
    DOVECOT_CLIENT_ID,
    DOVECOT_CLIENT_SECRET,
)

__all__ = [
    "MAIL_DOMAIN",
    "UTF8_ALIAS",
    "Layout",
    "Ports",
    "dovecot_conf",
    "oauth2_conf",
    "passwd_file",
    "postfix_main_cf",
    "postfix_master_cf",
]

MAIL_DOMAIN = "example.test"

# Offsets from the port base: the last three digits of each port are the well-known port, so
# `10993` reads as "IMAPS of base 10000". All < 1000, so bases 1000 apart never overlap.
_OFFSETS = {
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "submission": 587,
    "submissions": 465,
    "lmtp": 24,
    "relay": 25,
    "postfix_submission": 588,
    "postfix_submissions": 466,
    "oauth": 80,
}


@dataclass(frozen=True)
class Ports:
    """Every port of one harness, all on 127.0.0.1."""

    base: int
    imap: int  # Dovecot IMAP, STARTTLS
    imaps: int  # Dovecot IMAP, implicit TLS
    pop3: int  # Dovecot POP3, STLS
    pop3s: int  # Dovecot POP3, implicit TLS
    submission: int  # Dovecot submission, STARTTLS
    submissions: int  # Dovecot submission, implicit TLS
    lmtp: int  # Dovecot LMTP (Postfix delivers example.test here)
    relay: int  # Postfix relay, no AUTH, accepts from 127.0.0.0/8 for example.test only
    postfix_submission: int  # Postfix SMTP AUTH (smtpd_sasl_type = dovecot), STARTTLS
    postfix_submissions: int  # Postfix SMTP AUTH, implicit TLS (smtpd_tls_wrappermode)
    oauth: int  # the OAuth2 test server (HTTP)

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(base=base, **{name: base + offset for name, offset in _OFFSETS.items()})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def listening(self) -> dict[str, int]:
        """The ports that accept connections (every field but ``base``)."""
        return {k: v for k, v in asdict(self).items() if k != "base"}


@dataclass(frozen=True)
class Layout:
    """Paths under one harness base dir (kept short: unix sockets live here, ≤107 bytes)."""

    base: Path

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def run(self) -> Path:  # Dovecot base_dir
        return self.base / "run"

    @property
    def state(self) -> Path:  # Dovecot state_dir
        return self.base / "state"

    @property
    def log(self) -> Path:
        return self.base / "log"

    @property
    def mail(self) -> Path:
        return self.base / "mail"

    @property
    def tls(self) -> Path:
        return self.base / "tls"

    @property
    def postfix(self) -> Path:  # Postfix config_directory (main.cf, master.cf)
        return self.base / "postfix"

    @property
    def postfix_queue(self) -> Path:
        return self.base / "spool"

    @property
    def postfix_data(self) -> Path:
        return self.base / "pfdata"

    @property
    def owner(self) -> Path:  # who started the servers (servers._reap_stale reads it)
        return self.base / "owner.json"

    @property
    def dovecot_conf(self) -> Path:
        return self.etc / "dovecot.conf"

    @property
    def auth_socket(self) -> Path:  # Dovecot auth for Postfix's smtpd_sasl_path
        return self.run / "auth-postfix"

    @property
    def ca_pem(self) -> Path:
        return self.base / "ca.pem"

    @property
    def cert_pem(self) -> Path:
        return self.tls / "server.pem"

    @property
    def key_pem(self) -> Path:
        return self.tls / "server.key"

    def home(self, user: str) -> Path:
        return self.mail / user.lower()

    def maildir(self, user: str) -> Path:
        return self.home(user) / "Maildir"


def passwd_file(users: Mapping[str, str], uid: int, gid: int, layout: Layout) -> str:
    """Dovecot passwd-file: ``user:{PLAIN}password:uid:gid::home::``."""
    lines = [
        f"{user.lower()}:{{PLAIN}}{password}:{uid}:{gid}::{layout.home(user)}::"
        for user, password in users.items()
    ]
    return "\n".join(lines) + "\n"


def oauth2_conf(ports: Ports, *, timeout_ms: int) -> str:
    # Dovecot 2.3's post mode sends `token=..&client_id=..&client_secret=..` (client_secret_post)
    # from these settings; credentials in the URL's userinfo would add a Basic header as well,
    # and would show up wherever Dovecot logs the URL.
    return f"""\
# OAuth2 passdb of the trio_mailoauth test harness.
introspection_mode = post
introspection_url = http://127.0.0.1:{ports.oauth}/introspect
client_id = {DOVECOT_CLIENT_ID}
client_secret = {DOVECOT_CLIENT_SECRET}
# No tokeninfo_url: every login is introspected, so expiry/revocation take effect at once.
force_introspection = yes
username_attribute = email
active_attribute = active
active_value = true
scope = {DEFAULT_SCOPE}
# A hung token server must turn into "temporary failure" in bounded time.
timeout_msecs = {timeout_ms}
"""


def dovecot_conf(
    layout: Layout, ports: Ports, *, vmail_uid: int, vmail_gid: int, oauth2_args: Path
) -> str:
    run, passwd = layout.run, layout.etc / "passwd"
    return f"""\
# Private Dovecot of the trio_mailoauth test harness (generated; do not edit).
protocols = imap pop3 submission lmtp
listen = 127.0.0.1
base_dir = {run}
state_dir = {layout.state}
instance_name = tmo-{ports.base}
log_path = {layout.log}/dovecot.log
info_log_path = {layout.log}/dovecot.log
debug_log_path = {layout.log}/dovecot.log
# Dovecot refuses to run mail processes as root; every mailbox belongs to vmail.
first_valid_uid = {vmail_uid}
last_valid_uid = {vmail_uid}
first_valid_gid = {vmail_gid}
last_valid_gid = {vmail_gid}
mail_location = maildir:~/Maildir
# Tests throw the mail away: skip fsync, it is most of a delivery's cost.
mail_fsync = never
# Tests and benchmarks open several sessions per user from 127.0.0.1 (stock: 10).
mail_max_userip_connections = 200
postmaster_address = postmaster@{MAIL_DOMAIN}
hostname = localhost

ssl = yes
ssl_cert = <{layout.cert_pem}
ssl_key = <{layout.key_pem}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login xoauth2 oauthbearer
auth_username_format = %Lu
# Off so an expired or revoked token fails at the very next login.
auth_cache_size = 0
# Stock 2 s: every failing-login test would wait that long.
auth_failure_delay = 0
auth_verbose = yes

passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2_args}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%Lu {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {passwd}
  default_fields = uid={vmail_uid} gid={vmail_gid} home={layout.mail}/%Lu
}}

service imap-login {{
  inet_listener imap {{
    port = {ports.imap}
  }}
  inet_listener imaps {{
    port = {ports.imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports.pop3}
  }}
  inet_listener pop3s {{
    port = {ports.pop3s}
    ssl = yes
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = {ports.submission}
  }}
  inet_listener submissions {{
    port = {ports.submissions}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {ports.lmtp}
  }}
}}
service auth {{
  # Postfix's smtpd (user postfix) asks this socket to check SMTP AUTH (smtpd_sasl_type).
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  # No per-IP auth penalty: failures from 127.0.0.1 would slow every later login 2-15 s.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

# QUOTA (RFC 9208) for the IMAP tests: counted from the index, a limit that only reports.
mail_plugins = $mail_plugins quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = count:User quota
  quota_rule = *:storage=10G
  quota_vsizes = yes
}}

# Submission relays through the private Postfix, which delivers example.test back over LMTP.
submission_relay_host = 127.0.0.1
submission_relay_port = {ports.relay}
submission_relay_trusted = no
"""


_MASTER_CF_HEAD = """\
# Private Postfix of the trio_mailoauth test harness (generated; do not edit).
# No service is chrooted: the queue is a temp dir without the files a chroot would need.
# service type  private unpriv  chroot  wakeup  maxproc command + args
"""

_MASTER_CF_INTERNAL = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_master_cf(ports: Ports) -> str:
    auth = (
        "  -o smtpd_sasl_auth_enable=yes\n"
        "  -o smtpd_client_restrictions=\n"
        # Like a real submission port: only authenticated clients may send.
        "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
        "  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject\n"
    )
    return (
        _MASTER_CF_HEAD
        + f"127.0.0.1:{ports.relay} inet n - n - - smtpd\n"
        + f"127.0.0.1:{ports.postfix_submission} inet n - n - - smtpd\n"
        + "  -o syslog_name=postfix/submission\n"
        # Production submission: TLS before anything else, AUTH only over TLS.
        + "  -o smtpd_tls_security_level=encrypt\n"
        + "  -o smtpd_tls_auth_only=yes\n"
        + auth
        + f"127.0.0.1:{ports.postfix_submissions} inet n - n - - smtpd\n"
        + "  -o syslog_name=postfix/submissions\n"
        + "  -o smtpd_tls_wrappermode=yes\n"
        + auth
        + _MASTER_CF_INTERNAL
    )


# SMTPUTF8 mail cannot reach Dovecot 2.3 over LMTP (it does not offer SMTPUTF8, so Postfix
# bounces it), and Dovecot 2.3 submission does not offer it either. This UTF-8 alias of alice
# is delivered by Postfix's own virtual(8) agent straight into her Maildir instead, so a
# message sent with SMTPUTF8 through Postfix submission can be read back over IMAP as sent.
UTF8_ALIAS = f"ålice@{MAIL_DOMAIN}"
UTF8_ALIAS_USER = f"alice@{MAIL_DOMAIN}"


def postfix_main_cf(layout: Layout, ports: Ports, *, vmail_uid: int, vmail_gid: int) -> str:
    maildir = layout.maildir(UTF8_ALIAS_USER).relative_to(layout.mail)
    return f"""\
# Private Postfix of the trio_mailoauth test harness (generated; do not edit).
compatibility_level = 3.6
queue_directory = {layout.postfix_queue}
data_directory = {layout.postfix_data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {layout.log}/postfix.log
maillog_file_prefixes = /tmp, /var
myhostname = localhost
mydomain = {MAIL_DOMAIN}
myorigin = $mydomain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
smtputf8_enable = yes
# Stock 10 MB; the SMTP tests send a 25 MB attachment through Dovecot submission and Postfix.
message_size_limit = 52428800

# Only example.test is accepted, and it goes to Dovecot over LMTP. Everything else has an error
# transport: nothing can leave this host, whatever a test sends.
relay_domains = {MAIL_DOMAIN}
transport_maps = inline:{{ {UTF8_ALIAS}=virtual:, {MAIL_DOMAIN}=lmtp:inet:127.0.0.1:{ports.lmtp} }}
virtual_mailbox_base = {layout.mail}
virtual_mailbox_maps = inline:{{ {UTF8_ALIAS}={maildir}/ }}
virtual_uid_maps = static:{vmail_uid}
virtual_gid_maps = static:{vmail_gid}
virtual_minimum_uid = {vmail_uid}
# No cap of its own (the default, 50 MB, must not be below message_size_limit).
virtual_mailbox_limit = 0
default_transport = error:the trio_mailoauth test harness delivers only to {MAIL_DOMAIN}
relay_transport = error:the trio_mailoauth test harness delivers only to {MAIL_DOMAIN}
local_transport = error:local delivery is disabled in the test harness
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_auth_destination, reject
lmtp_host_lookup = native

smtpd_sasl_type = dovecot
smtpd_sasl_path = {layout.auth_socket}
smtpd_sasl_auth_enable = no
smtpd_tls_chain_files = {layout.key_pem}, {layout.cert_pem}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtp_tls_security_level = none
"""
