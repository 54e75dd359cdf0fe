"""Local servers that speak the SaaS vendors' wire protocols (SendGrid, Dropbox Sign, DocuSign,
Documenso, Stripe, PayPal), for the test suite and the benchmarks. Nothing in production imports them."""
