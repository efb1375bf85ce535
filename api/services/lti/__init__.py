"""LTI 1.3 Advantage with Learnstream as the tool (IMS LTI Core 1.3, Security Framework 1.0,
Deep Linking 2.0, Assignment and Grade Services 2.0, Names and Role Provisioning 2.0).

``keys``: the tool's own signing keys and JWKS; ``platforms``: a tenant's registered
LMSs and their (cached) JWKS; ``launch``: login initiation and launch validation,
provisioning; ``services``: Deep Linking responses, AGS and NRPS calls.
"""
