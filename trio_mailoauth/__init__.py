"""trio_mailoauth: IMAP, SMTP and POP3 over OAuth2 (XOAUTH2, OAUTHBEARER) for trio.

The sans-I/O protocol cores live in :mod:`trio_mailoauth.imap`, :mod:`trio_mailoauth.smtp`
and :mod:`trio_mailoauth.pop3`; tokens and providers in :mod:`trio_mailoauth.oauth`.
"""

from trio_mailoauth._client import ClientState as ClientState
from trio_mailoauth.errors import AuthenticationError as AuthenticationError
from trio_mailoauth.errors import AuthFailureKind as AuthFailureKind
from trio_mailoauth.errors import ConnectError as ConnectError
from trio_mailoauth.errors import ConnectionBrokenError as ConnectionBrokenError
from trio_mailoauth.errors import ConnectionClosedError as ConnectionClosedError
from trio_mailoauth.errors import FetchInterruptedError as FetchInterruptedError
from trio_mailoauth.errors import IMAPResponseError as IMAPResponseError
from trio_mailoauth.errors import InteractionRequiredError as InteractionRequiredError
from trio_mailoauth.errors import InvalidGrantError as InvalidGrantError
from trio_mailoauth.errors import LocalProtocolError as LocalProtocolError
from trio_mailoauth.errors import MailOAuthError as MailOAuthError
from trio_mailoauth.errors import OAuth2ClientError as OAuth2ClientError
from trio_mailoauth.errors import OAuth2Error as OAuth2Error
from trio_mailoauth.errors import POP3ResponseError as POP3ResponseError
from trio_mailoauth.errors import ProtocolError as ProtocolError
from trio_mailoauth.errors import RemoteProtocolError as RemoteProtocolError
from trio_mailoauth.errors import ResponseError as ResponseError
from trio_mailoauth.errors import SessionEndedError as SessionEndedError
from trio_mailoauth.errors import SMTPPermanentError as SMTPPermanentError
from trio_mailoauth.errors import SMTPResponseError as SMTPResponseError
from trio_mailoauth.errors import SMTPTransientError as SMTPTransientError
from trio_mailoauth.errors import TemporaryOAuth2Error as TemporaryOAuth2Error
from trio_mailoauth.errors import TLSError as TLSError
from trio_mailoauth.errors import TransportError as TransportError
from trio_mailoauth.imap.client import IMAPClient as IMAPClient
from trio_mailoauth.imap.client import open_imap as open_imap
from trio_mailoauth.oauth.tokens import AccessToken as AccessToken
from trio_mailoauth.oauth.tokens import StaticTokenProvider as StaticTokenProvider
from trio_mailoauth.oauth.tokens import TokenProvider as TokenProvider
from trio_mailoauth.pop3.client import POP3Client as POP3Client
from trio_mailoauth.pop3.client import open_pop3 as open_pop3
from trio_mailoauth.sasl import Login as Login
from trio_mailoauth.sasl import OAuthBearer as OAuthBearer
from trio_mailoauth.sasl import Plain as Plain
from trio_mailoauth.sasl import SASLMechanism as SASLMechanism
from trio_mailoauth.sasl import XOAuth2 as XOAuth2
from trio_mailoauth.smtp.client import SMTPClient as SMTPClient
from trio_mailoauth.smtp.client import open_smtp as open_smtp
from trio_mailoauth.smtp.client import send as send
from trio_mailoauth.smtp.message import SendResult as SendResult

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "AuthFailureKind",
    "AuthenticationError",
    "ClientState",
    "ConnectError",
    "ConnectionBrokenError",
    "ConnectionClosedError",
    "FetchInterruptedError",
    "IMAPClient",
    "IMAPResponseError",
    "InteractionRequiredError",
    "InvalidGrantError",
    "LocalProtocolError",
    "Login",
    "MailOAuthError",
    "OAuth2ClientError",
    "OAuth2Error",
    "OAuthBearer",
    "POP3Client",
    "POP3ResponseError",
    "Plain",
    "ProtocolError",
    "RemoteProtocolError",
    "ResponseError",
    "SASLMechanism",
    "SMTPClient",
    "SMTPPermanentError",
    "SMTPResponseError",
    "SMTPTransientError",
    "SendResult",
    "SessionEndedError",
    "StaticTokenProvider",
    "TLSError",
    "TemporaryOAuth2Error",
    "TokenProvider",
    "TransportError",
    "XOAuth2",
    "open_imap",
    "open_pop3",
    "open_smtp",
    "send",
]
