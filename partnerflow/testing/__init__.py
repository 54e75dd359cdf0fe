"""Local servers that speak the SaaS vendors' wire protocols (SendGrid, Dropbox Sign, DocuSign,
Documenso, Stripe, PayPal) with one fault mechanism (faults.py), and a throwaway home with a fresh
database (sandbox.py), for the test suite and the benchmarks. Nothing in production imports them."""
