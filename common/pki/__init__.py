"""Consortium PKI: the CA, enrolment kits, identities bound into certificates."""

from .ca import CAError, CertificateAuthority, IssuedCert, revoked_serials
from .identity import ROLES, Identity, check_name, identity_from_cert
from .kit import enroll_admin, enroll_site, renew_kit, server_credentials

__all__ = [
    "ROLES",
    "CAError",
    "CertificateAuthority",
    "Identity",
    "IssuedCert",
    "check_name",
    "enroll_admin",
    "enroll_site",
    "identity_from_cert",
    "renew_kit",
    "revoked_serials",
    "server_credentials",
]
