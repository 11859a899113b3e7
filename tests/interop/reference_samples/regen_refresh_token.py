import requests

# Replace user_id and refresh_token with your user id and refresh_token
data = {
    "refresh_token": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
    "user_id": 102
}
ALATION_AT_YOUR_COMPANY_URL="https://alation.yourcompany.com"

# # Regenerate refresh_token
response = requests.post(
    '{base_url}/integration/v1/regenRefreshToken/'.format(base_url=ALATION_AT_YOUR_COMPANY_URL
), data=data)
print(response.text)
