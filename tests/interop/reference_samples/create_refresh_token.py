import requests

# Replace username, name and password with your login ID, desired token name and password.
data = {'username':'[email protected]', 'password':'secret', 'name': 'My Precious Token'}

ALATION_AT_YOUR_COMPANY_URL="https://alation.yourcompany.com"

# Create RefreshToken for user: [email protected]
response = requests.post(
    '{base_url}/integration/v1/createRefreshToken/'.format(base_url=ALATION_AT_YOUR_COMPANY_URL
), data=data)
print(response.text)
