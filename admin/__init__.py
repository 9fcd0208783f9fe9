"""The operator's side: the ``mmlego admin`` commands and the admin console, a local web view of
the coordinator. Both talk to the coordinator only through the admin client of
:mod:`common.admin` (gRPC, mutual TLS with an admin kit); neither imports the coordinator."""
